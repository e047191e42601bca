//! The MCP tools. Each answers with text for the agent; a refusal is a tool
//! error (`isError`) whose text says what to do next, so the agent can tell
//! the human exactly which command to run.

use std::time::Duration;

use airlock_common::dbus::{AirlockError, Gateway1Proxy, GrantInfo};
use airlock_common::timefmt::now_unix;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::cli::Args;
use crate::grants;
use crate::proxy::ProxyClient;
use crate::session;

/// Longest wait a single `airlock_wait_for_decision` call may ask for.
const MAX_WAIT_SECS: u64 = 300;
/// Longest line a client may send: every tool's arguments fit many times
/// over, and a hostile client cannot make this process buffer the SDK's
/// default of 16 MiB per line (such a line is dropped and answered, the
/// session goes on; see stdio.rs).
pub const MAX_LINE: usize = 1 << 20;
/// How often a wait looks at the request again.
const POLL: Duration = Duration::from_millis(200);

type ToolResult = Result<String, String>;

#[derive(Clone)]
pub struct Airlock {
    gateway: Gateway1Proxy<'static>,
    proxy: std::sync::Arc<ProxyClient>,
    tool_router: ToolRouter<Self>,
}

#[derive(Deserialize, JsonSchema)]
pub struct RequestAccess {
    /// Services to open, as named in /etc/airlock/services.d (e.g. ["gmail"]).
    pub services: Vec<String>,
    /// Why, in a sentence the human will read before approving.
    pub reason: String,
    /// Ask for write access (grants are read-only unless the human approves with --write).
    #[serde(default)]
    pub write: bool,
    /// How long the grant should last, in minutes (default 60, at most 480).
    pub minutes: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
pub struct WaitForDecision {
    /// The id airlock_request_access returned.
    pub request_id: String,
    /// Seconds to wait at most (capped at 300; default 60).
    pub timeout_s: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ListEmails {
    /// The mail service (an imap service in /etc/airlock/services.d).
    pub service: String,
    /// Mailbox (default INBOX).
    pub mailbox: Option<String>,
    /// Most messages to return.
    pub limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
pub struct SearchEmails {
    pub service: String,
    pub mailbox: Option<String>,
    /// Text to search for.
    pub query: String,
    pub limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
pub struct GetEmail {
    pub service: String,
    pub mailbox: Option<String>,
    /// The message's IMAP UID (from list or search).
    pub uid: u32,
}

#[derive(Deserialize, JsonSchema)]
pub struct CountUnread {
    pub service: String,
    pub mailbox: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct HttpRequest {
    /// The HTTP service (in /etc/airlock/services.d).
    pub service: String,
    /// GET, HEAD, OPTIONS, or (under a write grant or for a listed read-only path) POST and others.
    pub method: String,
    /// Path (and query) under the service's upstream, e.g. "/user/repos?per_page=5".
    pub path: String,
    /// Request body (sent as is).
    pub body: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct CheckCommand {
    /// The command as argv, e.g. ["git", "push", "origin", "main"].
    pub argv: Vec<String>,
    /// Policy role to judge it under (default: the role of your governed session).
    pub role: Option<String>,
}

fn bus_error(action: &str, error: zbus::Error) -> String {
    if let zbus::Error::MethodError(name, message, _) = &error {
        if name
            .as_str()
            .starts_with("org.freedesktop.DBus.Error.ServiceUnknown")
            || name
                .as_str()
                .starts_with("org.freedesktop.DBus.Error.NameHasNoOwner")
        {
            return format!("{action}: airlock-gateway is not running on the system bus");
        }
        if !name.as_str().starts_with("org.airlock.Error.") {
            return format!("{action}: {}", message.clone().unwrap_or_default());
        }
    }
    match AirlockError::from_remote(error) {
        AirlockError::ZBus(e) => format!("{action}: {e}"),
        other => format!("{action}: {}", other.message()),
    }
}

fn no_grant(service: &str) -> String {
    format!(
        "no grant covers service {service:?}: call airlock_request_access with \
         services [\"{service}\"] and a reason, then ask the human to run \
         `airlockctl approve ID` (ID is the request id it returns)"
    )
}

/// A service name as the proxy's paths take it: one plain path segment.
fn valid_service(service: &str) -> Result<(), String> {
    let ok = !service.is_empty()
        && service.len() <= 64
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && service != "."
        && service != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid service name {service:?}: use the name from /etc/airlock/services.d \
             (letters, digits, '-', '_', '.')"
        ))
    }
}

impl Airlock {
    async fn grants(&self) -> Result<Vec<GrantInfo>, String> {
        self.gateway
            .list_grants()
            .await
            .map_err(|e| bus_error("listing grants", e))
    }

    /// Refuses early, with advice, when no live grant of ours covers
    /// `service`; the proxy checks again itself, this is only for the
    /// agent's sake.
    async fn require_grant(&self, service: &str) -> Result<(), String> {
        valid_service(service)?;
        let uid = nix_uid();
        let grants = self.grants().await?;
        let mine: Vec<GrantInfo> = grants
            .into_iter()
            .filter(|g| g.subject_uid == uid)
            .collect();
        match grants::covering(&mine, service) {
            Some(_) => Ok(()),
            None => Err(no_grant(service)),
        }
    }

    async fn mail(&self, service: &str, op: &str, body: serde_json::Value) -> ToolResult {
        self.require_grant(service).await?;
        let reply = self
            .proxy
            .send(
                "POST",
                &format!("/{service}/{op}"),
                Some(body.to_string().into_bytes()),
                true,
            )
            .await
            .map_err(|e| e.to_string())?;
        proxy_answer(service, reply)
    }
}

fn nix_uid() -> u32 {
    // getuid never fails.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(u32::MAX)
}

fn proxy_answer(service: &str, reply: crate::proxy::ProxyReply) -> ToolResult {
    match reply.status {
        200..=299 => Ok(reply.body),
        401 | 403 if reply.body.is_empty() => Err(no_grant(service)),
        status => Err(format!(
            "airlock-proxy answered {status} for {service}: {}",
            reply.body
        )),
    }
}

#[tool_router]
impl Airlock {
    #[tool(
        description = "Airlock's state for you: the gateway, your governed sessions and the grants you hold (which services and commands they open, read-only or write, and when they expire)."
    )]
    async fn airlock_status(&self) -> ToolResult {
        let status = self
            .gateway
            .status()
            .await
            .map_err(|e| bus_error("status", e))?;
        let uid = nix_uid();
        let grants: Vec<_> = self
            .grants()
            .await?
            .into_iter()
            .filter(|g| g.subject_uid == uid)
            .map(|g| {
                json!({
                    "id": g.id,
                    "scope": g.scope,
                    "access": g.access.as_str(),
                    "session": *g.session,
                    "expires_in_s": (g.expires_at - now_unix()).max(0),
                })
            })
            .collect();
        let listed = self
            .gateway
            .list_sessions()
            .await
            .map_err(|e| bus_error("sessions", e))?;
        let current = session::own(&listed).map(|s| s.id.clone());
        let sessions: Vec<_> = listed
            .into_iter()
            .filter(|s| s.uid == uid && s.ended_at.is_none())
            .map(|s| json!({"id": s.id, "role": s.role}))
            .collect();
        Ok(json!({
            "gateway": {
                "policy_ok": status.policy_ok,
                "pending_requests": status.pending_requests,
                "approvals_available": status.totp_reachable,
            },
            "sessions": sessions,
            "current_session": current,
            "grants": grants,
        })
        .to_string())
    }

    #[tool(
        description = "Ask a human for access to services (mail, HTTP APIs). Returns a request id; access is NOT granted until the human approves it with a TOTP code. Then call airlock_wait_for_decision."
    )]
    async fn airlock_request_access(&self, Parameters(p): Parameters<RequestAccess>) -> ToolResult {
        if p.services.is_empty() {
            return Err("services is empty: name at least one service".into());
        }
        for service in &p.services {
            valid_service(service)?;
        }
        let minutes = p.minutes.unwrap_or(0);
        if minutes > 480 {
            return Err("minutes: at most 480 (8 hours)".into());
        }
        let reason = if p.write {
            format!("{} (asks for write access)", p.reason)
        } else {
            p.reason
        };
        let scope = format!("services:{}", p.services.join(","));
        let id = self
            .gateway
            .request_approval(&scope, &reason, minutes * 60)
            .await
            .map_err(|e| bus_error("request", e))?;
        let how = if p.write {
            format!("airlockctl approve --write {id}")
        } else {
            format!("airlockctl approve {id}")
        };
        Ok(format!(
            "request {id}: not approved yet: ask the human to run `{how}`, then call \
             airlock_wait_for_decision with request_id \"{id}\""
        ))
    }

    #[tool(
        description = "Wait (at most timeout_s seconds, capped at 300) for a human to decide a request airlock_request_access filed."
    )]
    async fn airlock_wait_for_decision(
        &self,
        Parameters(p): Parameters<WaitForDecision>,
    ) -> ToolResult {
        let wait = Duration::from_secs(p.timeout_s.unwrap_or(60).min(MAX_WAIT_SECS));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // A grant for the request means approved; a request gone
            // without one means denied or expired.
            if let Some(g) = self
                .grants()
                .await?
                .iter()
                .find(|g| g.request_id == p.request_id)
            {
                return Ok(format!(
                    "approved: grant {} opens {} ({}) for {} more seconds",
                    g.id,
                    g.scope,
                    g.access.as_str(),
                    (g.expires_at - now_unix()).max(0)
                ));
            }
            let pending = self
                .gateway
                .list_requests()
                .await
                .map_err(|e| bus_error("requests", e))?
                .iter()
                .any(|r| r.id == p.request_id);
            if !pending {
                return Err(format!(
                    "request {} is not pending and no grant came of it: it was denied, \
                     expired, or never existed",
                    p.request_id
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(format!(
                    "not approved yet after {} s: the human must run `airlockctl approve {}`; \
                     call again to keep waiting",
                    wait.as_secs(),
                    p.request_id
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    #[tool(
        description = "List recent messages in a mailbox of a mail service (read-only; needs a grant for the service)."
    )]
    async fn airlock_list_emails(&self, Parameters(p): Parameters<ListEmails>) -> ToolResult {
        self.mail(
            &p.service,
            "list_messages",
            json!({"mailbox": p.mailbox, "limit": p.limit}),
        )
        .await
    }

    #[tool(
        description = "Search a mailbox of a mail service (read-only; needs a grant for the service)."
    )]
    async fn airlock_search_emails(&self, Parameters(p): Parameters<SearchEmails>) -> ToolResult {
        self.mail(
            &p.service,
            "search",
            json!({"mailbox": p.mailbox, "query": p.query, "limit": p.limit}),
        )
        .await
    }

    #[tool(
        description = "Fetch one message by UID without marking it read (needs a grant for the service)."
    )]
    async fn airlock_get_email(&self, Parameters(p): Parameters<GetEmail>) -> ToolResult {
        self.mail(
            &p.service,
            "get_message",
            json!({"mailbox": p.mailbox, "uid": p.uid}),
        )
        .await
    }

    #[tool(description = "Count unread messages in a mailbox (needs a grant for the service).")]
    async fn airlock_count_unread(&self, Parameters(p): Parameters<CountUnread>) -> ToolResult {
        self.mail(&p.service, "count_unread", json!({"mailbox": p.mailbox}))
            .await
    }

    #[tool(
        description = "Make an HTTP request to a service's API through Airlock, which adds the credential (you never see it). Read-only methods unless the grant allows writing."
    )]
    async fn airlock_http_request(&self, Parameters(p): Parameters<HttpRequest>) -> ToolResult {
        let method = p.method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("invalid method {:?}", p.method));
        }
        if !p.path.starts_with('/') || p.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "invalid path {:?}: it must start with '/' and hold no spaces or control characters",
                p.path
            ));
        }
        self.require_grant(&p.service).await?;
        let reply = self
            .proxy
            .send(
                &method,
                &format!("/{}{}", p.service, p.path),
                p.body.map(String::into_bytes),
                false,
            )
            .await
            .map_err(|e| e.to_string())?;
        let status = reply.status;
        match proxy_answer(&p.service, reply) {
            Ok(body) => Ok(format!("HTTP {status}\n\n{body}")),
            Err(e) => Err(e),
        }
    }

    #[tool(
        description = "Ask Airlock's policy whether a command would run: allow, block, or approve (runs only under a grant a human approves), with the rule that decides."
    )]
    async fn airlock_check_command(&self, Parameters(p): Parameters<CheckCommand>) -> ToolResult {
        if p.argv.is_empty() {
            return Err("argv is empty: give the command as a list of words".into());
        }
        let role = match p.role {
            Some(role) => role,
            None => {
                let sessions = self
                    .gateway
                    .list_sessions()
                    .await
                    .map_err(|e| bus_error("sessions", e))?;
                session::own(&sessions).map(|s| s.role.clone()).ok_or(
                    "this airlock-mcp runs in no governed session: give the role to check under",
                )?
            }
        };
        let argv: Vec<&str> = p.argv.iter().map(String::as_str).collect();
        let d = self
            .gateway
            .check_command(&role, &argv)
            .await
            .map_err(|e| bus_error("check", e))?;
        Ok(json!({
            "decision": d.decision.as_str(),
            "rule": *d.rule,
            "policy": *d.policy,
            "source": d.source,
            "refusal": d.refusal,
        })
        .to_string())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Airlock {
    /// The router's own answer to an unknown tool is a bare "tool not
    /// found"; an agent (or its human) is better served by the name it sent
    /// and where the real names are.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !self.tool_router.has_route(&request.name) {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool {:?}: tools/list shows the tools airlock-mcp has",
                    request.name
                ),
                None,
            ));
        }
        let call = ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("airlock-mcp", env!("CARGO_PKG_VERSION"))).with_instructions(
            "Airlock guards this machine. Services (mail, APIs) open only under a grant a human \
             approves with a second factor: call airlock_request_access, tell the human the \
             command it prints, then airlock_wait_for_decision.",
        )
    }
}

pub async fn serve(args: Args) -> anyhow::Result<()> {
    let bus = zbus::Connection::system().await.map_err(|e| {
        anyhow::anyhow!("cannot reach the D-Bus system bus ({e}); is dbus-daemon running?")
    })?;
    let gateway = Gateway1Proxy::builder(&bus)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let server = Airlock {
        gateway,
        proxy: std::sync::Arc::new(ProxyClient::new(&args.proxy_socket)),
        tool_router: Airlock::tool_router(),
    };
    let stdio = crate::stdio::start(MAX_LINE);
    let transport = AsyncRwTransport::<RoleServer, _, _>::new(stdio.read, stdio.write)
        .with_max_line_length(MAX_LINE);
    let running = server.serve(transport).await?;
    running.waiting().await?;
    // The last answers are still on their way to stdout; rmcp has closed
    // its end, so the writer ends once they are out (bounded all the same).
    let _ = tokio::time::timeout(Duration::from_secs(5), stdio.writer).await;
    Ok(())
}
