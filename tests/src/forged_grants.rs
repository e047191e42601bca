//! A compromised gateway hands the enforcer grants nobody approved.
//!
//! The attacker has code execution as `airlock-gateway`: it may call
//! `Enforcer1.UpdateSession` (busctl as that user, on the real bus), and it
//! reads what the gateway user can read: the audit log with every signed
//! grant, the policy files. One governed session under the catalogue's role
//! (`terraform plan` needs approval) first shows the grant path works: a
//! grant an approver signed lets `terraform plan` run. Then each forged
//! grant is pushed as the session's only one, each time right after the
//! genuine grant, pushed by the attacker through the same call with the
//! same rules, let `terraform plan` run; after the forged one it must be
//! refused, and the enforcer must say why.

use airlock_common::dbus::{RuleSpec, SessionSpec, SignedGrantWire};
use airlock_common::grant::{Access, GrantBody, Scope, SignedGrant, Subject};
use airlock_common::policy::{Action, PolicySet};
use airlock_common::{names, timefmt};
use ring::signature::Ed25519KeyPair;

use crate::catalogue::{approve, fifo, request_in, trigger, Bench, PlanLoop, ROLE};
use crate::totp::Authenticator;
use crate::{bin, users, CtlOutput, System, TestUser, AGENT, APPROVER};

const GATEWAY: TestUser = TestUser {
    name: names::GATEWAY_USER,
};

/// One forged grant and what became of it.
pub struct Forgery {
    pub name: &'static str,
    /// `terraform plan` did not run after it was pushed, and the enforcer
    /// logged why it refused the grant.
    pub refused: bool,
    /// The enforcer's reason, or what went wrong.
    pub detail: String,
}

/// The signed grant `grant_issued` recorded for `grant_id`, as the gateway
/// user can read it in the audit log.
fn signed_grant(system: &System, grant_id: &str) -> Result<SignedGrantWire, String> {
    let records = airlock_common::audit::read_records(&system.audit_log())
        .map_err(|e| format!("reading the audit log: {e}"))?;
    records
        .iter()
        .find(|r| r.event == "grant_issued" && r.field_str("grant_id") == Some(grant_id))
        .and_then(|r| serde_json::from_value(r.fields.get("signed")?.clone()).ok())
        .ok_or_else(|| format!("no signed grant_issued record for {grant_id}"))
}

/// The session's spec as the gateway sends it, built from what the gateway
/// user can read: its `session_started` record and the policy files.
fn session_spec(system: &System, session: &str) -> Result<SessionSpec, String> {
    let records = airlock_common::audit::read_records(&system.audit_log())
        .map_err(|e| format!("reading the audit log: {e}"))?;
    let started = records
        .iter()
        .find(|r| r.event == "session_started" && r.field_str("session") == Some(session))
        .ok_or_else(|| format!("no session_started record for {session}"))?;
    let field = |key: &str| started.fields.get(key).cloned().unwrap_or_default();
    let role = started.field_str("role").unwrap_or_default().to_owned();
    let set = PolicySet::load_dir(&system.policy_dir())
        .map_err(|e| format!("loading the policies: {e:?}"))?;
    let rules = set
        .effective_rules(&role)
        .map_err(|e| e.to_string())?
        .into_iter()
        .enumerate()
        .map(|(index, rule)| RuleSpec {
            index: index as u32,
            action: rule.action,
            command: rule.command.clone(),
            policy: rule.policy_id.clone(),
            source: rule.source.to_string(),
            reason: rule.reason.clone().unwrap_or_default(),
        })
        .collect();
    Ok(SessionSpec {
        id: session.to_owned(),
        index: field("index").as_u64().ok_or("no session index")? as u32,
        default_action: set.role(&role).map_or(Action::Block, |r| r.default_action),
        role,
        uid: field("uid").as_u64().ok_or("no session uid")? as u32,
        bound_uid: field("bound_uid").as_bool().unwrap_or(false),
        rules,
        grants: Vec::new(),
        search_path: serde_json::from_value(field("search_path")).unwrap_or_default(),
        revoked: false,
        allow_debugging: false,
        tools: Vec::new(),
        allow_local_ports: Vec::new(),
    })
}

/// busctl's arguments for `UpdateSession(spec)`.
fn update_session_args(spec: &SessionSpec) -> Vec<String> {
    let action = |a: Action| a.to_string();
    let mut args: Vec<String> = [
        "org.airlock.Enforcer1",
        "/org/airlock/Enforcer1",
        "org.airlock.Enforcer1",
        "UpdateSession",
        "(susubsa(usssss)a(ss)asbba(ssas)aq)",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend([
        spec.id.clone(),
        spec.index.to_string(),
        spec.role.clone(),
        spec.uid.to_string(),
        spec.bound_uid.to_string(),
        action(spec.default_action),
        spec.rules.len().to_string(),
    ]);
    for rule in &spec.rules {
        args.extend([
            rule.index.to_string(),
            action(rule.action),
            rule.command.clone(),
            rule.policy.clone(),
            rule.source.clone(),
            rule.reason.clone(),
        ]);
    }
    args.push(spec.grants.len().to_string());
    for grant in &spec.grants {
        args.extend([grant.payload.clone(), grant.signature.clone()]);
    }
    args.push(spec.search_path.len().to_string());
    args.extend(spec.search_path.iter().cloned());
    args.push(spec.revoked.to_string());
    args.push(spec.allow_debugging.to_string());
    args.push(spec.tools.len().to_string());
    for tool in &spec.tools {
        args.extend([tool.name.clone(), tool.style.clone()]);
        args.push(tool.value_options.len().to_string());
        args.extend(tool.value_options.iter().cloned());
    }
    args.push(spec.allow_local_ports.len().to_string());
    args.extend(spec.allow_local_ports.iter().map(u16::to_string));
    args
}

/// Pushes `spec` with `grants` as the gateway user.
fn push(system: &System, spec: &SessionSpec, grants: &[SignedGrantWire]) -> CtlOutput {
    let spec = SessionSpec {
        grants: grants.to_vec(),
        ..spec.clone()
    };
    let args = update_session_args(&spec);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    system.busctl_call(&GATEWAY, &args)
}

/// A grant body for the session, live for ten minutes.
fn body(grant_id: &str, session: &str, uid: u32, command: &str) -> GrantBody {
    let now = timefmt::now_unix();
    GrantBody {
        version: 1,
        grant_id: grant_id.into(),
        request_id: format!("{grant_id}-req"),
        subject: Subject {
            uid,
            session: Some(session.into()),
        },
        scope: Scope::parse(&format!("command:{command}")).unwrap(),
        access: Access::Read,
        not_before: now - 1,
        expires_at: now + 600,
    }
}

/// The enforcer's log line refusing grant `id`, if any.
fn refusal_logged(system: &System, id: &str) -> Option<String> {
    let needle = format!("grant {id} refused");
    system
        .service_log("airlock-enforcer")
        .lines()
        .find(|l| l.contains(&needle))
        .map(|l| {
            l.split_once(&needle)
                .map_or(l, |(_, reason)| reason.trim_start_matches([',', ':', ' ']))
                .replace("not installed: ", "")
        })
}

/// Runs the scenario; an error says what did not work as a precondition
/// (the forgeries' verdicts are in the result).
pub fn scenario(
    system: &System,
    bench: &Bench,
    app: &mut Authenticator,
) -> Result<Vec<Forgery>, String> {
    let ctl = bin("airlockctl");
    let ctl = ctl.display();
    // Session A also asks for a `terraform validate` grant of its own.
    let mut agent = PlanLoop::start(
        system,
        bench,
        "forged",
        "terraform plan",
        &format!(
            "{ctl} request --scope 'command:terraform validate' --reason forged-grants \
             > a-req.out 2> a-req.err"
        ),
    )?;
    let validate_request = request_in(&agent.dir().join("a-req.out"))?;
    // Session B, of the same user, asks for `terraform plan` and waits.
    let work_b = agent.dir().join("b");
    std::fs::create_dir(&work_b).unwrap();
    let uid = agent_uid();
    std::os::unix::fs::chown(&work_b, Some(uid), Some(uid)).unwrap();
    fifo(&work_b.join("go"));
    let script_b = format!(
        "cd {work} && {ctl} request --scope 'command:terraform plan' --reason other-session \
         > req.out 2> req.err; read l < go",
        work = work_b.display()
    );
    let _b = system.spawn_as_with_path(
        &AGENT,
        &bin("airlockctl"),
        &["run", "--role", ROLE, "--", "sh", "-c", &script_b],
        &bench.path(),
    );
    let other_request = request_in(&work_b.join("req.out"))?;

    let plan_grant = approve(system, app, &agent.request, "10m")?;
    let validate_grant = approve(system, app, &validate_request, "10m")?;
    let other_grant = approve(system, app, &other_request, "10m")?;
    let (ran, out) = agent.plan()?;
    if !ran {
        return Err(format!("the approved terraform plan did not run: {out}"));
    }
    let session = agent.session.clone();
    let genuine = signed_grant(system, &plan_grant)?;
    let spec = session_spec(system, &session)?;
    if spec.uid != uid {
        return Err(format!("session {session} is not the agent's: {spec:?}"));
    }

    let attacker = {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    };
    let forged_body = |id: &str| body(id, &session, uid, "terraform plan");
    let unsigned = SignedGrantWire {
        payload: serde_json::to_string(&forged_body("grt-forged-unsigned")).unwrap(),
        signature: String::new(),
    };
    let own_key: SignedGrantWire =
        SignedGrant::sign_with(&forged_body("grt-forged-own-key"), |m| {
            attacker.sign(m).as_ref().to_vec()
        })
        .into();
    // There is no unsigned command beside the signed grant any more: an
    // edit can only be of the signed payload.
    let mut edited = signed_grant(system, &validate_grant)?;
    let original = edited.payload.clone();
    edited.payload = edited.payload.replace(
        "\"command\":\"terraform validate\"",
        "\"command\":\"terraform plan\"",
    );
    if edited.payload == original {
        return Err(format!("found no command to edit in {original}"));
    }
    let cases = [
        ("no signature", unsigned, "grt-forged-unsigned".to_owned()),
        (
            "signed by a key of the attacker's",
            own_key,
            "grt-forged-own-key".to_owned(),
        ),
        (
            "approved for another session",
            signed_grant(system, &other_grant)?,
            other_grant.clone(),
        ),
        (
            "approved for `terraform validate`, command edited",
            edited,
            validate_grant.clone(),
        ),
    ];

    let mut forgeries = Vec::new();
    for (name, forged, id) in cases {
        // The attacker's channel works: the genuine grant, pushed by it,
        // is honoured.
        let pushed = push(system, &spec, std::slice::from_ref(&genuine));
        if pushed.code != 0 {
            return Err(format!(
                "UpdateSession as the gateway user failed: {pushed:?}"
            ));
        }
        let (ran, out) = agent.plan()?;
        if !ran {
            return Err(format!(
                "terraform plan did not run under the genuine grant the gateway user pushed: {out}"
            ));
        }
        // The forged grant replaces it.
        let pushed = push(system, &spec, &[forged]);
        if pushed.code != 0 {
            return Err(format!(
                "UpdateSession with a forged grant failed outright (it should be taken, with the \
                 grant refused): {pushed:?}"
            ));
        }
        let (ran, out) = agent.plan()?;
        let logged = refusal_logged(system, &id);
        forgeries.push(Forgery {
            name,
            refused: !ran && logged.is_some(),
            detail: match (ran, logged) {
                (false, Some(reason)) => reason,
                (false, None) => "refused, but the enforcer logged no refusal of it".to_owned(),
                (true, _) => format!("RAN: {out}"),
            },
        });
    }
    trigger(&work_b.join("go"));
    // The approvals are on the record; the forgeries are not.
    let log = std::fs::read_to_string(system.audit_log()).unwrap_or_default();
    for forged in ["grt-forged-unsigned", "grt-forged-own-key"] {
        if log.contains(forged) {
            return Err(format!("{forged} is in the audit log"));
        }
    }
    let _ = system.ctl(&APPROVER, &["revoke", &plan_grant], "");
    Ok(forgeries)
}

fn agent_uid() -> u32 {
    users::uid(AGENT.name).as_raw()
}
