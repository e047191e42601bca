use std::path::{Path, PathBuf};

use super::*;
use crate::services::{MailSecurity, ToolService};

fn load(files: &[(&str, &str)]) -> Result<ServiceSet, Vec<String>> {
    let files: Vec<_> = files
        .iter()
        .map(|(name, text)| (PathBuf::from(name), text.to_string()))
        .collect();
    load_sources(&files).map_err(|ds| ds.iter().map(|d| d.to_string()).collect())
}

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    load(files).expect_err("should be refused")
}

const API: &str = r#"
[[service]]
name = "api"
kind = "http"
upstream = "http://127.0.0.1:8080/v1/"
fields = ["user", "token"]
inject = { style = "basic", username_field = "user", password_field = "token" }
read_only_post = ["/search", "/query/*"]
"#;

#[test]
fn the_shipped_examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services");
    let set = ServiceSet::load_dir(&dir).unwrap();
    let names: Vec<_> = set.services().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "aws-dev",
            "ghcr",
            "github-git",
            "github",
            "gmail",
            "icloud",
            "kube-staging",
            "openrouter"
        ]
    );
    let github = set.get("github").unwrap();
    let ServiceKind::Http(http) = &github.kind else {
        panic!("github is http");
    };
    assert_eq!(http.upstream.authority(), "api.github.com:443");
    assert_eq!(
        http.inject,
        Injection::Bearer {
            field: "token".into()
        }
    );
    assert!(http.is_read_only("GET", "/repos/x/y/issues"));
    assert!(http.is_read_only("POST", "/markdown"));
    assert!(!http.is_read_only("POST", "/repos/x/y/issues"));
    assert!(!http.is_read_only("DELETE", "/markdown"));
    let ServiceKind::Imap(gmail) = &set.get("gmail").unwrap().kind else {
        panic!("gmail is imap");
    };
    assert!(gmail.upstream.tls);
    assert_eq!(gmail.upstream.port, 993);
    assert!(
        github.source.ends_with("github.toml:7:8"),
        "{}",
        github.source
    );
}

#[test]
fn a_loopback_service_with_basic_auth_and_read_only_posts() {
    let set = load(&[("api.toml", API)]).unwrap();
    let api = set.get("api").unwrap();
    assert_eq!(api.fields, ["user", "token"]);
    let ServiceKind::Http(http) = &api.kind else {
        panic!()
    };
    assert_eq!(
        http.upstream,
        Upstream {
            tls: false,
            host: "127.0.0.1".into(),
            port: 8080,
            base_path: "/v1".into()
        }
    );
    assert!(http.is_read_only("POST", "/search"));
    assert!(!http.is_read_only("POST", "/search/more"));
    assert!(http.is_read_only("POST", "/query/anything"));
    assert!(!http.is_read_only("PUT", "/query/anything"));
    assert!(http.is_read_only("HEAD", "/x"));
    assert!(http.is_read_only("OPTIONS", "/x"));
}

#[test]
fn every_problem_is_reported_at_its_place() {
    let text = r#"
[[service]]
name = "Bad Name"
kind = "http"
upstream = "http://example.com"
fields = ["token", "token"]
inject = { style = "bearer", field = "secret" }
read_only_post = ["search", "/a/../b", "/x*y"]
colour = "blue"

[[service]]
name = "mail"
kind = "imap"
upstream = "imaps://imap.example.com/INBOX"
fields = ["user"]
login = { user_field = "user", password_field = "password" }

[[service]]
name = "hdr"
kind = "http"
upstream = "https://example.com"
fields = ["token"]
inject = { style = "header", name = "Host", field = "token" }

[[service]]
name = "wat"
kind = "ftp"
"#;
    let errors = errors(&[("bad.toml", text)]);
    let expected = [
        "bad.toml:3:8: `name`: \"Bad Name\" must be 1-64 characters of a-z, 0-9, - and _",
        "bad.toml:5:12: `upstream`: http sends the credential in the clear: only to a loopback address (use https for example.com)",
        // With a bad `fields`, references to fields are not checked.
        "bad.toml:6:20: field \"token\" is listed twice",
        "bad.toml:8:19: read-only POST path \"search\": must start with /",
        "bad.toml:8:29: read-only POST path \"/a/../b\": may hold no empty, `.` or `..` segment",
        "bad.toml:8:40: read-only POST path \"/x*y\": `*` may only end the path (a prefix)",
        "bad.toml:9:1: unknown key `colour` in an http [[service]] (expected one of: name, description, kind, upstream, fields, inject, read_only_post)",
        "bad.toml:14:12: `upstream`: an IMAP upstream has no path",
        "bad.toml:16:49: `password_field`: \"password\" is not one of the service's `fields` (user)",
        "bad.toml:23:37: `name`: Host frames the request itself and cannot carry a credential",
        "bad.toml:27:8: `kind`: unknown kind \"ftp\" (expected \"http\", \"imap\", \"aws\", \"kubernetes\", \"git\" or \"docker\")",
    ];
    assert_eq!(errors, expected, "{errors:#?}");
}

#[test]
fn duplicates_missing_keys_and_syntax_errors() {
    let errors = errors(&[
        ("a.toml", API),
        ("b.toml", API),
        ("c.toml", "[[service]]\nname = \"x\"\n"),
        ("d.toml", "[[service]\nname = 1\n"),
        ("e.toml", "service = 3\n"),
        ("f.toml", "# nothing\n"),
    ]);
    assert!(
        errors[0].starts_with("b.toml:3:8: service \"api\" is defined twice (first at a.toml:3:8)"),
        "{errors:#?}"
    );
    assert!(errors
        .iter()
        .any(|e| e.starts_with("c.toml:") && e.contains("missing required key `kind`")));
    assert!(errors
        .iter()
        .any(|e| e.starts_with("c.toml:") && e.contains("missing required key `fields`")));
    assert!(errors.iter().any(|e| e.starts_with("d.toml:1:")));
    assert!(errors
        .iter()
        .any(|e| e.starts_with("e.toml:1:11: `service` must be an array of tables")));
    assert!(errors
        .iter()
        .any(|e| e.starts_with("f.toml:1:1: no [[service]] table")));
}

#[test]
fn upstreams() {
    let ok = |text, http| parse_upstream(text, http).unwrap();
    assert_eq!(
        ok("https://api.example.com", true).authority(),
        "api.example.com:443"
    );
    assert_eq!(ok("http://localhost:3000", true).port, 3000);
    assert_eq!(ok("http://[::1]:81/x", true).authority(), "[::1]:81");
    assert_eq!(ok("imap://127.0.0.1", false).port, 143);
    for (bad, http) in [
        ("ftp://x", true),
        ("https://user@x", true),
        ("https://x?q=1", true),
        ("https://x:0", true),
        ("https://x:99999", true),
        ("https://", true),
        ("imap://imap.example.com", false),
        ("https://x/a/../b", true),
        ("api.example.com", true),
        ("https://[::1", true),
    ] {
        assert!(parse_upstream(bad, http).is_err(), "{bad}");
    }
}

#[test]
fn starttls_secures_an_imap_upstream_to_any_host_and_only_that() {
    let service = |upstream: &str, extra: &str| {
        format!(
            "[[service]]\nname = \"mail\"\nkind = \"imap\"\nupstream = \"{upstream}\"\n\
             fields = [\"u\", \"p\"]\nlogin = {{ user_field = \"u\", password_field = \"p\" }}\n\
             {extra}\n"
        )
    };
    let set = load(&[(
        "m.toml",
        &service("imap://mail.example.com", "starttls = true"),
    )])
    .unwrap();
    let ServiceKind::Imap(imap) = &set.get("mail").unwrap().kind else {
        panic!("imap");
    };
    assert_eq!(imap.security(), MailSecurity::StartTls);
    assert_eq!(imap.upstream.authority(), "mail.example.com:143");
    let plain = load(&[("m.toml", &service("imap://127.0.0.1:1143", ""))]).unwrap();
    let ServiceKind::Imap(imap) = &plain.get("mail").unwrap().kind else {
        panic!("imap");
    };
    assert_eq!(imap.security(), MailSecurity::Plain);
    for (upstream, extra, why) in [
        (
            "imaps://mail.example.com",
            "starttls = true",
            "m.toml:7:12: `starttls` is for an imap:// upstream",
        ),
        (
            "imap://mail.example.com",
            "starttls = false",
            "m.toml:4:12: `upstream`: imap sends the credential in the clear",
        ),
        (
            "imap://mail.example.com",
            "starttls = \"yes\"",
            "m.toml:7:12: `starttls` must be a boolean",
        ),
        (
            "imaps://mail.example.com",
            "starttls = \"yes\"",
            "m.toml:7:12: `starttls` must be a boolean",
        ),
    ] {
        let errors = errors(&[("m.toml", &service(upstream, extra))]);
        // One error each: a bad `starttls` adds none of its own elsewhere.
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(why), "{errors:?} vs {why}");
    }
    // An HTTP service has no such key.
    let http = "[[service]]\nname = \"api\"\nkind = \"http\"\nupstream = \"https://x.example\"\n\
                fields = [\"t\"]\ninject = { style = \"bearer\", field = \"t\" }\nstarttls = true\n";
    let errors = errors(&[("a.toml", http)]);
    assert!(errors.iter().any(|e| e.contains("starttls")), "{errors:?}");
}

#[test]
fn tool_services_load_with_their_fields_and_servers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services");
    let set = ServiceSet::load_dir(&dir).unwrap();
    for (name, tool, server) in [
        ("aws-dev", Tool::Aws, None),
        (
            "kube-staging",
            Tool::Kubernetes,
            Some("https://k8s.staging.example:6443"),
        ),
        ("github-git", Tool::Git, Some("github.com")),
        ("ghcr", Tool::Docker, Some("ghcr.io")),
    ] {
        let def = set.get(name).unwrap_or_else(|| panic!("{name} is shipped"));
        assert_eq!(
            def.kind,
            ServiceKind::Tool(ToolService {
                tool,
                server: server.map(str::to_owned)
            }),
            "{name}"
        );
    }
    let git = set.get("github-git").unwrap();
    assert_eq!(git.fields, ["username", "token"]);
    assert_eq!(git.kind.as_str(), "git");
}

#[test]
fn tool_services_refuse_fields_and_servers_the_tool_cannot_use() {
    let aws_missing = "[[service]]\nname = \"a\"\nkind = \"aws\"\nfields = [\"access_key_id\"]\n";
    assert_eq!(
        errors(&[("a.toml", aws_missing)]),
        ["a.toml:4:10: a aws service needs the field secret_access_key"]
    );
    let git_both = "[[service]]\nname = \"g\"\nkind = \"git\"\nhost = \"github.com\"\nfields = [\"username\", \"password\", \"token\", \"pin\"]\n";
    assert_eq!(
        errors(&[("g.toml", git_both)]),
        [
            "g.toml:5:10: field \"pin\" means nothing to git (its fields: username, password, token)",
            "g.toml:5:10: list one of password and token, not both",
        ]
    );
    let no_host = "[[service]]\nname = \"g\"\nkind = \"git\"\nfields = [\"username\", \"token\"]\nupstream = \"https://x\"\n";
    let e = errors(&[("g.toml", no_host)]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("g.toml:1:1: missing required key `host`"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("g.toml:5:1: unknown key `upstream` in a git [[service]]"),
        "{e:?}"
    );
    let kube_plain = "[[service]]\nname = \"k\"\nkind = \"kubernetes\"\nserver = \"http://k8s.example\"\nfields = [\"token\"]\n";
    let e = errors(&[("k.toml", kube_plain)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("k.toml:4:10: `server`: http sends the credential in the clear"),
        "{e:?}"
    );
    let docker_bad = "[[service]]\nname = \"d\"\nkind = \"docker\"\nregistry = \"ghcr io\"\nfields = [\"username\", \"secret\"]\n";
    let e = errors(&[("d.toml", docker_bad)]);
    assert!(
        e[0].starts_with("d.toml:4:12: `registry`: must be"),
        "{e:?}"
    );
    let unknown = "[[service]]\nname = \"x\"\nkind = \"ssh\"\nfields = [\"key\"]\n";
    let e = errors(&[("x.toml", unknown)]);
    assert!(e[0].contains("unknown kind \"ssh\""), "{e:?}");
}

#[test]
fn an_imaps_service_may_name_its_own_ca_file_which_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let not_pem = dir.path().join("key.txt");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let service = |upstream: &str, ca_file: &str| {
        format!(
            "[[service]]\nname = \"mail\"\nkind = \"imap\"\nupstream = \"{upstream}\"\n\
             fields = [\"u\", \"p\"]\nlogin = {{ user_field = \"u\", password_field = \"p\" }}\n\
             ca_file = {ca_file}\n"
        )
    };
    let good = service("imaps://mail.home.test", &format!("{:?}", ca.display()));
    let set = load(&[("m.toml", &good)]).unwrap();
    let ServiceKind::Imap(imap) = &set.get("mail").unwrap().kind else {
        panic!("imap");
    };
    assert_eq!(imap.ca_file.as_deref(), Some(ca.as_path()));
    let missing = dir.path().join("nope.pem");
    for (upstream, ca_file, why) in [
        (
            "imaps://mail.home.test",
            format!("{:?}", missing.display()),
            format!("m.toml:7:11: `ca_file`: cannot read {}", missing.display()),
        ),
        (
            "imaps://mail.home.test",
            format!("{:?}", not_pem.display()),
            format!("m.toml:7:11: `ca_file`: {} holds no PEM", not_pem.display()),
        ),
        (
            "imaps://mail.home.test",
            "\"ca.pem\"".into(),
            "m.toml:7:11: `ca_file`: \"ca.pem\" is not an absolute path".into(),
        ),
        (
            "imaps://mail.home.test",
            "7".into(),
            "m.toml:7:11: `ca_file`".into(),
        ),
        (
            "imap://127.0.0.1:1143",
            format!("{:?}", ca.display()),
            "m.toml:7:11: `ca_file`: is for an imaps or STARTTLS upstream".into(),
        ),
    ] {
        let errors = errors(&[("m.toml", &service(upstream, &ca_file))]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(&why), "{errors:?} vs {why}");
    }
    // An HTTP service has no such key.
    let http = "[[service]]\nname = \"h\"\nkind = \"http\"\nupstream = \"https://x.test\"\n\
                fields = [\"t\"]\ninject = { style = \"bearer\", field = \"t\" }\nca_file = \"/x\"\n";
    assert!(errors(&[("h.toml", http)])[0].contains("unknown key `ca_file`"));
}
