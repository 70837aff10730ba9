//! The fake Hetzner Cloud API as a process, for the benchmark script:
//! `fake-hetzner ADDR ZONE...` prints its base URL and serves until killed.
//! The token it accepts is `e2e::TOKEN`; `GET /stats` (outside `/v1`)
//! answers the number of API calls so far, `GET /calls` the calls as a JSON
//! list, `GET /seed/N/IP` puts records `hI.<first zone> A IP` for N hosts.
//! `GET /seed-in/ZONE/PREFIX/N/IP` puts `PREFIX<i>.ZONE A IP` for i < N.
//! With `MIRROR_TXT_TO` (pebble-challtestsrv's management URL), TXT RRSets
//! are published there, as Hetzner's name servers would. With
//! `EXTRA_PROJECT=NAME:ZONE,…` a second project holds those zones; its
//! token is what `FakeHetzner::add_project` gives.

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let fake = e2e::FakeHetzner::start_on(&addr);
    for zone in args {
        fake.add_zone(&zone);
    }
    if let Ok(extra) = std::env::var("EXTRA_PROJECT") {
        for (project, zone) in extra.split(',').filter_map(|p| p.split_once(':')) {
            fake.add_project(project);
            fake.add_zone_in(project, zone);
        }
    }
    if let Ok(url) = std::env::var("MIRROR_TXT_TO") {
        fake.mirror_txt_to(&url);
    }
    println!("{}", fake.url());
    loop {
        std::thread::park();
    }
}
