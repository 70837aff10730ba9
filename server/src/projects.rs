//! `HETZNER_TOKENS_FILE`: the tokens of several Hetzner projects.
//!
//! A Hetzner API token belongs to one project, and zones are often spread
//! over several. The file holds one `name token` pair per line (`#` starts
//! a comment); `HETZNER_TOKEN`, beside or instead of it, is the project
//! named `default`. Every zone is written with the token of the project
//! that has it (`zones`), and each project has its own API budget.

use crate::env::{is_placeholder, Secret};

/// The project of `HETZNER_TOKEN`.
pub const DEFAULT_PROJECT: &str = "default";

/// One project's name and token.
#[derive(Debug, Clone)]
pub struct ProjectToken {
    pub name: String,
    pub token: Secret,
}

/// The file's text as projects; every bad line is named by its number
/// (never with the token). `before`: projects already known (`default`
/// when `HETZNER_TOKEN` is set), whose names and tokens the file may not
/// use again.
pub fn parse(text: &str, before: &[ProjectToken]) -> Result<Vec<ProjectToken>, Vec<String>> {
    let mut projects: Vec<ProjectToken> = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let also =
            |name: &str| if name == DEFAULT_PROJECT { " (HETZNER_TOKEN is the project named default)" } else { "" };
        match parse_line(line) {
            Ok(p) if before.iter().chain(&projects).any(|o| o.name == p.name) => errors.push(format!(
                "HETZNER_TOKENS_FILE line {n}: the project name {} is used twice{}",
                p.name,
                also(&p.name)
            )),
            Ok(p) => match before.iter().chain(&projects).find(|o| o.token == p.token) {
                Some(o) => errors.push(format!(
                    "HETZNER_TOKENS_FILE line {n}: project {} has the same token as project {}{}; give each project its own",
                    p.name,
                    o.name,
                    also(&o.name)
                )),
                None => projects.push(p),
            },
            Err(e) => errors.push(format!("HETZNER_TOKENS_FILE line {n}: {e}")),
        }
    }
    if projects.is_empty() && errors.is_empty() {
        errors.push("HETZNER_TOKENS_FILE holds no project; write one `name token` pair per line".into());
    }
    if errors.is_empty() {
        Ok(projects)
    } else {
        Err(errors)
    }
}

fn parse_line(line: &str) -> Result<ProjectToken, String> {
    let mut words = line.split_whitespace();
    let (Some(name), Some(token), None) = (words.next(), words.next(), words.next()) else {
        return Err("write `name token` (two words: a project name, then its API token)".into());
    };
    let name_ok = name.len() <= 40
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !name_ok {
        return Err(format!(
            "{name:?} is not a project name; use letters, digits, - and _ (at most 40), e.g. family or client-a"
        ));
    }
    if token.contains('=') && token.len() < 40 {
        return Err(format!("the token of project {name} looks like KEY=value; write the token itself"));
    }
    if (token.starts_with('"') && token.ends_with('"')) || (token.starts_with('\'') && token.ends_with('\'')) {
        return Err(format!("the token of project {name} is wrapped in quotes; remove them"));
    }
    if is_placeholder(token) {
        return Err(format!("the token of project {name} is still a placeholder; put the project's API token there"));
    }
    Ok(ProjectToken { name: name.to_string(), token: Secret::new(token) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_comments_and_every_bad_line_named_without_its_token() {
        let text = "# projects\nfamily tokfamily0123\n\nclient-a   tokclient0123  # no\nwork\n\"x\" tok\nfamily tokother\nsame tokfamily0123\nb 'quoted'\nc replace-with-your-token\n";
        let errors = parse(text, &[]).expect_err("bad lines");
        let all = errors.join("\n");
        assert!(all.contains("line 4: write `name token`"), "{all}");
        assert!(all.contains("line 5: write `name token`"), "{all}");
        assert!(all.contains("line 6: \"\\\"x\\\"\" is not a project name"), "{all}");
        assert!(all.contains("line 7: the project name family is used twice"), "{all}");
        assert!(all.contains("line 8: project same has the same token as project family"), "{all}");
        assert!(all.contains("line 9: the token of project b is wrapped in quotes"), "{all}");
        assert!(all.contains("line 10: the token of project c is still a placeholder"), "{all}");
        assert!(!all.contains("tokfamily0123") && !all.contains("tokother"), "{all}");

        let ok = parse("# two\nfamily tokfamily0123\nclient-a tokclient0123\n", &[]).expect("projects");
        let names: Vec<&str> = ok.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["family", "client-a"]);
        assert_eq!(ok[1].token.expose(), "tokclient0123");
    }

    #[test]
    fn default_is_taken_by_hetzner_token_and_an_empty_file_is_refused() {
        let default = [ProjectToken { name: DEFAULT_PROJECT.into(), token: Secret::new("tok0123456") }];
        let errors = parse("default tok0123456\n", &default).expect_err("taken");
        assert!(errors[0].contains("HETZNER_TOKEN is the project named default"), "{errors:?}");
        let errors = parse("family tok0123456\n", &default).expect_err("same token");
        assert!(
            errors[0].contains("project family has the same token as project default (HETZNER_TOKEN"),
            "{errors:?}"
        );
        let errors = parse("# nothing\n\n", &[]).expect_err("empty");
        assert!(errors[0].contains("holds no project"), "{errors:?}");
    }
}
