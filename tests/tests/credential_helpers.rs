//! Tool-native credential helpers against a real bus, real users and the
//! real daemons: `airlockctl credential-helper` speaks each tool's own
//! protocol (AWS `credential_process`, the kubectl exec plugin, git's
//! helper through the real `git credential fill`, Docker's helper as
//! `docker-credential-airlock`) for a caller under a grant, and refuses,
//! saying how to ask, without one, for another user, and for the same
//! user outside the session the grant is bound to. `credentials wire-up`
//! writes configuration the real git follows.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use airlock_common::timefmt::{now_unix, parse_rfc3339};
use airlock_tests::{CtlOutput, Options, System, TestUser, AGENT, APPROVER, OUTSIDER};

const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AWS_TOKEN: &str = "FwoGZXIvYXdzEXAMPLEtokenQ2";
const KUBE_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.kube-example-token";
const GIT_TOKEN: &str = "ghp_git9Xq2Lm4Np7Rs1Tu3Vw5Yz8Ab6Cd0Ef";
const DOCKER_SECRET: &str = "dckr_pat_Zx7Wv5Ut3Sr1Qp9On";
const KUBE_SERVER: &str = "https://k8s.test.example:6443";

fn services() -> Vec<(String, String)> {
    vec![(
        "tools.toml".into(),
        format!(
            r#"
[[service]]
name = "aws-dev"
kind = "aws"
fields = ["access_key_id", "secret_access_key", "session_token"]

[[service]]
name = "kube"
kind = "kubernetes"
server = "{KUBE_SERVER}"
fields = ["token"]

[[service]]
name = "gh"
kind = "git"
host = "git.test.example"
fields = ["username", "token"]

[[service]]
name = "registry"
kind = "docker"
registry = "registry.test.example:5000"
fields = ["username", "secret"]
"#
        ),
    )]
}

fn store_all(system: &System) {
    system.store_credential("aws-dev", "access_key_id", AWS_KEY);
    system.store_credential("aws-dev", "secret_access_key", AWS_SECRET);
    system.store_credential("aws-dev", "session_token", AWS_TOKEN);
    system.store_credential("kube", "token", KUBE_TOKEN);
    system.store_credential("gh", "username", "octo");
    system.store_credential("gh", "token", GIT_TOKEN);
    system.store_credential("registry", "username", "robot");
    system.store_credential("registry", "secret", DOCKER_SECRET);
}

/// The agent asks for `services` (outside any session) and the approver
/// approves with a code; returns the grant's expiry.
fn grant(system: &System, app: &mut airlock_tests::totp::Authenticator, services: &str) -> i64 {
    let id = system.grant_services(app, services, "deploy");
    let grants = system.ctl(&AGENT, &["grants", "--json"], "");
    let grants: Vec<serde_json::Value> = serde_json::from_str(&grants.success().stdout).unwrap();
    let grant = grants
        .iter()
        .find(|g| g["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no grant for {id}: {grants:#?}"));
    grant["expires_at"].as_i64().expect("expires_at")
}

/// `airlockctl credential-helper ARGS` as `user`, with `env` and `stdin`.
fn helper(
    system: &System,
    user: &TestUser,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: &str,
) -> CtlOutput {
    let ctl = system.bin("airlockctl");
    let mut all: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    all.push(ctl.display().to_string());
    all.push("credential-helper".into());
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    system.run_as(user, Path::new("/usr/bin/env"), &all, stdin)
}

fn assert_refused(out: &CtlOutput, service: &str) {
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("airlockctl request --services {service}")),
        "the refusal says how to ask: {out:?}"
    );
    for secret in [AWS_KEY, AWS_SECRET, KUBE_TOKEN, GIT_TOKEN, DOCKER_SECRET] {
        assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    }
}

/// A directory the agent owns.
fn agent_dir(system: &System, name: &str) -> PathBuf {
    let dir = system.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let agent = airlock_tests::users::uid(AGENT.name).as_raw();
    std::os::unix::fs::chown(&dir, Some(agent), Some(agent)).unwrap();
    dir
}

fn assert_nowhere(system: &System, secret: &str) {
    for log in ["airlock-gateway", "airlock-totp"] {
        assert!(
            !system.service_log(log).contains(secret),
            "{log}'s log holds a value"
        );
    }
    let audit = std::fs::read_to_string(system.audit_log()).unwrap();
    assert!(!audit.contains(secret), "the audit log holds a value");
}

#[test]
fn each_helper_speaks_its_tools_protocol_only_under_a_grant() {
    let system = System::start_with(Options {
        services: Some(services()),
        ..Options::default()
    });
    let mut app = system.enrol();
    store_all(&system);

    // No grant: each helper refuses, saying how to ask.
    for (args, stdin, service) in [
        (&["aws", "aws-dev"][..], "", "aws-dev"),
        (&["kube", "kube"][..], "", "kube"),
        (
            &["git", "gh", "get"][..],
            "protocol=https\nhost=git.test.example\n\n",
            "gh",
        ),
        (
            &["docker", "registry", "get"][..],
            "registry.test.example:5000\n",
            "registry",
        ),
    ] {
        assert_refused(&helper(&system, &AGENT, &[], args, stdin), service);
    }

    let expires_at = grant(&system, &mut app, "aws-dev,kube,gh,registry");

    // AWS credential_process: the JSON the SDKs parse.
    let out = helper(&system, &AGENT, &[], &["aws", "aws-dev"], "");
    let aws: serde_json::Value = serde_json::from_str(&out.success().stdout).unwrap();
    assert_eq!(aws["Version"], 1);
    assert_eq!(aws["AccessKeyId"], AWS_KEY);
    assert_eq!(aws["SecretAccessKey"], AWS_SECRET);
    assert_eq!(aws["SessionToken"], AWS_TOKEN);
    let expiration = parse_rfc3339(aws["Expiration"].as_str().unwrap()).unwrap();
    assert_eq!(expiration, expires_at, "Expiration is the grant's expiry");
    assert!(expiration > now_unix());

    // kubectl: an ExecCredential in the version KUBERNETES_EXEC_INFO asks.
    let info = format!(
        r#"{{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{{"interactive":false,"cluster":{{"server":"{KUBE_SERVER}"}}}}}}"#
    );
    let out = helper(
        &system,
        &AGENT,
        &[("KUBERNETES_EXEC_INFO", &info)],
        &["kube", "kube"],
        "",
    );
    let exec: serde_json::Value = serde_json::from_str(&out.success().stdout).unwrap();
    assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(exec["kind"], "ExecCredential");
    assert_eq!(exec["status"]["token"], KUBE_TOKEN);
    let stamp = parse_rfc3339(exec["status"]["expirationTimestamp"].as_str().unwrap());
    assert_eq!(stamp, Some(expires_at));
    // A cluster other than the service's gets no token.
    let elsewhere = info.replace(KUBE_SERVER, "https://evil.example:6443");
    let out = helper(
        &system,
        &AGENT,
        &[("KUBERNETES_EXEC_INFO", &elsewhere)],
        &["kube", "kube"],
        "",
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("not released"), "{out:?}");
    assert!(!out.stdout.contains(KUBE_TOKEN));
    // A malformed KUBERNETES_EXEC_INFO is an error, not a token.
    let out = helper(
        &system,
        &AGENT,
        &[("KUBERNETES_EXEC_INFO", "{nope")],
        &["kube", "kube"],
        "",
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("KUBERNETES_EXEC_INFO"), "{out:?}");

    // git, through the real `git credential fill`, configured by wire-up.
    let home = agent_dir(&system, "agent-home");
    let services_dir = system.path("services");
    let home_env = format!("HOME={}", home.display());
    let ctl = system.bin("airlockctl").display().to_string();
    let services_arg = services_dir.display().to_string();
    for (tool, service) in [("git", "gh"), ("docker", "registry")] {
        let out = system.run_as(
            &AGENT,
            Path::new("/usr/bin/env"),
            &[
                &home_env,
                &ctl,
                "credentials",
                "wire-up",
                tool,
                service,
                "--services-dir",
                &services_arg,
            ],
            "",
        );
        assert!(out.success().stdout.contains("wrote "), "{out:?}");
    }
    let git_config = home.join(".config/airlock/tools/git/config");
    assert!(git_config.is_file());
    let git_env = [
        home_env.clone(),
        "GIT_TERMINAL_PROMPT=0".into(),
        "GIT_CONFIG_COUNT=1".into(),
        "GIT_CONFIG_KEY_0=include.path".into(),
        format!("GIT_CONFIG_VALUE_0={}", git_config.display()),
    ];
    let git = |stdin: &str| {
        let mut args: Vec<&str> = git_env.iter().map(String::as_str).collect();
        args.extend(["git", "credential", "fill"]);
        system.run_as(&AGENT, Path::new("/usr/bin/env"), &args, stdin)
    };
    let out = git("protocol=https\nhost=git.test.example\n\n");
    let filled = &out.success().stdout;
    assert!(filled.contains("username=octo\n"), "{filled}");
    assert!(
        filled.contains(&format!("password={GIT_TOKEN}\n")),
        "{filled}"
    );
    // Another host: the helper is not even configured for it.
    let out = git("protocol=https\nhost=other.example\n\n");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains(GIT_TOKEN));
    // The helper itself answers nothing for a host it does not serve, and
    // store/erase change nothing.
    let out = helper(
        &system,
        &AGENT,
        &[],
        &["git", "gh", "get"],
        "host=other.example\n\n",
    );
    assert_eq!(out.success().stdout, "");
    // Over plain http (the right host, a live grant) git gets nothing: the
    // token would cross the network in the clear.
    let out = helper(
        &system,
        &AGENT,
        &[],
        &["git", "gh", "get"],
        "protocol=http\nhost=git.test.example\n\n",
    );
    assert_eq!(out.success().stdout, "", "{out:?}");
    assert!(out.stderr.contains("https only"), "{out:?}");
    let out = helper(
        &system,
        &AGENT,
        &[],
        &["git", "gh", "store"],
        "host=git.test.example\nusername=x\npassword=y\n\n",
    );
    assert_eq!(out.success().stdout, "");

    // Docker: docker-credential-airlock (a symlink, as packaged) finds the
    // service from the wire-up's map in DOCKER_CONFIG.
    let bin = agent_dir(&system, "agent-bin");
    let docker_helper = bin.join("docker-credential-airlock");
    std::os::unix::fs::symlink(system.bin("airlockctl"), &docker_helper).unwrap();
    let docker_config = home.join(".config/airlock/tools/docker");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(docker_config.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        config["credHelpers"]["registry.test.example:5000"],
        "airlock"
    );
    let docker_env = format!("DOCKER_CONFIG={}", docker_config.display());
    let docker = |args: &[&str], stdin: &str| {
        let mut all = vec![docker_env.as_str(), docker_helper.to_str().unwrap()];
        all.extend_from_slice(args);
        system.run_as(&AGENT, Path::new("/usr/bin/env"), &all, stdin)
    };
    let out = docker(&["get"], "registry.test.example:5000\n");
    let creds: serde_json::Value = serde_json::from_str(&out.success().stdout).unwrap();
    assert_eq!(creds["ServerURL"], "registry.test.example:5000");
    assert_eq!(creds["Username"], "robot");
    assert_eq!(creds["Secret"], DOCKER_SECRET);
    let out = docker(&["get"], "https://index.docker.io/v1/\n");
    assert_ne!(out.code, 0);
    assert_eq!(
        out.stdout.trim(),
        "credentials not found in native keychain"
    );
    let out = docker(&["list"], "");
    assert_eq!(out.success().stdout.trim(), "{}");

    // Another user gets nothing from the agent's grant.
    assert_refused(
        &helper(&system, &OUTSIDER, &[], &["aws", "aws-dev"], ""),
        "aws-dev",
    );
    // A helper for the wrong kind of service says so.
    let out = helper(&system, &AGENT, &[], &["aws", "kube"], "");
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("kubernetes credential, not aws"),
        "{out:?}"
    );

    // Each answer is an audited operation, never with a value.
    let ops: Vec<serde_json::Value> = system
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "service_operation")
        .collect();
    let allowed = |op: &str| {
        ops.iter()
            .filter(|r| r["op"] == op && r["allowed"] == true)
            .count()
    };
    assert!(allowed("credential_process") >= 1, "{ops:#?}");
    assert!(allowed("exec_credential") >= 1, "{ops:#?}");
    assert!(allowed("git_credential") >= 1, "{ops:#?}");
    assert!(allowed("docker_credential") >= 1, "{ops:#?}");
    assert!(ops.iter().any(|r| r["op"] == "credential_process"
        && r["allowed"] == false
        && r["uid"] == airlock_tests::users::uid(OUTSIDER.name).as_raw()));
    for secret in [
        AWS_KEY,
        AWS_SECRET,
        AWS_TOKEN,
        KUBE_TOKEN,
        GIT_TOKEN,
        DOCKER_SECRET,
    ] {
        assert_nowhere(&system, secret);
    }
}

/// A grant asked for inside a governed session releases to that session's
/// processes only: the same user outside it is refused.
#[test]
fn a_session_grant_releases_to_that_session_only() {
    let system = System::start_with(Options {
        services: Some(services()),
        enforcer: true,
        ..Options::default()
    });
    let mut app = system.enrol();
    store_all(&system);
    let ctl = system.bin("airlockctl");
    let scratch = agent_dir(&system, "agent-scratch");
    let released = scratch.join("released.json");
    let script = format!(
        "{ctl} request --services aws-dev --reason 'in the session' >/dev/null && \
         while ! {ctl} grants | grep -q 'opens:   aws-dev'; do sleep 0.2; done && \
         {ctl} credential-helper aws aws-dev > {out}.tmp && mv {out}.tmp {out}",
        ctl = ctl.display(),
        out = released.display(),
    );
    let mut session = system.spawn_ctl(&AGENT, &["run", "--", "sh", "-c", &script]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let request = loop {
        let pending = system.ctl(&APPROVER, &["requests", "--json"], "");
        let pending: Vec<serde_json::Value> =
            serde_json::from_str(&pending.success().stdout).unwrap();
        if let Some(r) = pending.first() {
            break r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request from the session"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let session_id = request["session"]
        .as_str()
        .expect("a session-bound request")
        .to_owned();
    system
        .ctl(
            &APPROVER,
            &["approve", request["id"].as_str().unwrap(), "--code-stdin"],
            &format!("{}\n", app.next_code()),
        )
        .success();
    let status = session.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(session.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "the session's helper failed: {stderr}");
    let aws: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&released).unwrap()).unwrap();
    assert_eq!(aws["AccessKeyId"], AWS_KEY);
    // The same user outside the session: refused, naming no session grant.
    let out = helper(&system, &AGENT, &[], &["aws", "aws-dev"], "");
    assert_refused(&out, "aws-dev");
    let ops: Vec<serde_json::Value> = system
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "service_operation" && r["op"] == "credential_process")
        .collect();
    assert_eq!(ops.len(), 2, "{ops:#?}");
    assert_eq!(ops[0]["allowed"], true);
    assert_eq!(ops[0]["session"], session_id.as_str());
    assert_eq!(ops[1]["allowed"], false);
    assert!(
        ops[1].get("session").is_none_or(|s| s.is_null()),
        "{ops:#?}"
    );
}

/// `airlockctl run` points a session's tools at what wire-up wrote, with
/// variables that hold paths, and git in the session follows them.
#[test]
fn run_exports_the_wired_configuration_to_the_session() {
    let system = System::start_with(Options {
        services: Some(services()),
        enforcer: true,
        ..Options::default()
    });
    let home = agent_dir(&system, "agent-home");
    let home_env = format!("HOME={}", home.display());
    let ctl = system.bin("airlockctl").display().to_string();
    let services_arg = system.path("services").display().to_string();
    let as_agent = |args: &[&str]| {
        let mut all = vec![home_env.as_str(), ctl.as_str()];
        all.extend_from_slice(args);
        system.run_as(&AGENT, Path::new("/usr/bin/env"), &all, "")
    };
    // Nothing wired: nothing exported.
    let script =
        "printf '[%s][%s][%s]\\n' \"$AWS_CONFIG_FILE\" \"$KUBECONFIG\" \"$GIT_CONFIG_COUNT\"; \
                  git config --get-all credential.https://git.test.example.helper || true";
    let out = as_agent(&["run", "--", "sh", "-c", script]);
    assert!(out.success().stdout.starts_with("[][][]"), "{out:?}");
    for (tool, service) in [("aws", "aws-dev"), ("kube", "kube"), ("git", "gh")] {
        as_agent(&[
            "credentials",
            "wire-up",
            tool,
            service,
            "--services-dir",
            &services_arg,
        ])
        .success();
    }
    // A wire-up for the wrong kind is refused and writes nothing.
    let out = as_agent(&[
        "credentials",
        "wire-up",
        "docker",
        "gh",
        "--services-dir",
        &services_arg,
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("service gh is git, not docker"),
        "{out:?}"
    );
    assert!(!home.join(".config/airlock/tools/docker").exists());
    let tools = home.join(".config/airlock/tools");
    let out = as_agent(&["run", "--", "sh", "-c", script]);
    let stdout = &out.success().stdout;
    assert!(
        stdout.starts_with(&format!(
            "[{}][{}][1]",
            tools.join("aws/config").display(),
            tools.join("kube/config").display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("'{ctl}' credential-helper git gh")),
        "git in the session follows the include: {stdout}"
    );
    let aws = std::fs::read_to_string(tools.join("aws/config")).unwrap();
    assert!(
        aws.contains("[profile aws-dev]") && aws.contains("credential_process = "),
        "{aws}"
    );
    let kube: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tools.join("kube/config")).unwrap()).unwrap();
    assert_eq!(kube["clusters"][0]["cluster"]["server"], KUBE_SERVER);
    assert_eq!(kube["users"][0]["user"]["exec"]["args"][2], "kube");
}
