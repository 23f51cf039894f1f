//! `kubectl cafe console` in a real browser (headless Chromium): the page
//! follows a release live and acts as the person whose kubeconfig started
//! it. Four people: alice wrote the template (four-eyes refuses her
//! confirmation), bob releases, carol pauses from kubectl, dave may only
//! look. Forged requests (another origin, no token, a read-only console)
//! and a connection to the machine's non-loopback address are refused.

use std::process::Command;
use std::time::{Duration, Instant};

use cafe_operator::api::{CafeDeployment, HistoryAction, Phase};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::support::browser::Browser;
use crate::support::console::Console;
use crate::support::namespace::TestNs;
use crate::support::operator::Operator;
use crate::support::signoff::{
    api, as_user, confirm_until_healthy, demo, history, kubeconfig_as, recorded, set_image,
    signed_namespace, wait_phase,
};

/// The release card's selector.
fn card(ns: &TestNs) -> String {
    format!("[data-key=\"{}/demo\"]", ns.name)
}

/// What one group stands at in one cell, as the page draws it.
const GROUP_STATE: &str = "const c = document.querySelector(arguments[0]); if (!c) return null; \
     const td = c.querySelector('[data-cell=\"' + arguments[1] + '\"] [data-group=\"' + arguments[2] + '\"]'); \
     return td ? td.getAttribute('data-state') : null;";

/// Opens the dialog of `verb` on `scope` and presses its action button.
async fn act(browser: &Browser, scope: &str, verb: &str) {
    browser
        .wait(
            &format!("an enabled {verb} button"),
            30,
            "const b = document.querySelector(arguments[0]); return b && !b.disabled;",
            json!([format!("{scope} button[data-verb=\"{verb}\"]")]),
        )
        .await;
    browser
        .click(&format!("{scope} button[data-verb=\"{verb}\"]"))
        .await;
    browser
        .wait(
            "the dialog",
            10,
            "return document.getElementById('dialog').open;",
            json!([]),
        )
        .await;
}

async fn go_and_read(browser: &Browser, area: &str) -> String {
    browser
        .js("document.getElementById('result').textContent = ''; document.getElementById('error').textContent = '';", json!([]))
        .await;
    browser.click("#dialog-go").await;
    browser
        .wait(
            &format!("text in #{area}"),
            30,
            "return document.getElementById(arguments[0]).textContent;",
            json!([area]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The people of the story and what RBAC lets each do. Everyone may read
/// what the console watches; bob may also freeze and thaw; dave may only look.
async fn people(ns: &TestNs) -> Vec<String> {
    ns.create::<Role>(json!({
        "metadata": {"name": "console-viewer"},
        "rules": [
            {"apiGroups": ["cafe.sofastack.io"], "resources": ["cafedeployments", "inplacesets"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["controllerrevisions"], "verbs": ["get", "list", "watch"]}
        ]
    }))
    .await;
    let users = ["alice", "bob", "carol", "dave"];
    ns.create::<RoleBinding>(json!({
        "metadata": {"name": "console-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "console-viewer"},
        "subjects": users.iter().map(|u| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u})).collect::<Vec<_>>()
    }))
    .await;
    let name = format!("{}-console", ns.name);
    let roles: Api<ClusterRole> = Api::all(ns.client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(ns.client.clone());
    for (suffix, verbs, who) in [
        ("look", vec!["get", "list", "watch"], users.to_vec()),
        ("freeze", vec!["create", "patch"], vec!["bob"]),
    ] {
        let role: ClusterRole = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-{suffix}")},
            "rules": [{"apiGroups": ["cafe.sofastack.io"],
                       "resources": ["releasefreezes", "memberclusters"], "verbs": verbs}]
        }))
        .expect("role");
        roles
            .create(&PostParams::default(), &role)
            .await
            .expect("cluster role");
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-{suffix}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": format!("{name}-{suffix}")},
            "subjects": who.iter().map(|u| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u})).collect::<Vec<_>>()
        }))
        .expect("binding");
        bindings
            .create(&PostParams::default(), &binding)
            .await
            .expect("cluster role binding");
    }
    vec![format!("{name}-look"), format!("{name}-freeze")]
}

/// A state-changing request from outside the page: its status and body.
async fn post(port: u16, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the console");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let request = format!(
        "POST /api/act HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        raw.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

/// This machine's first non-loopback IPv4 address (no packet is sent: a
/// UDP socket's connect only picks the route).
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("198.18.0.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn confirmed(cd: &CafeDeployment) -> bool {
    cd.annotations()
        .get("cafe.sofastack.io/upgrade-confirmed")
        .map(String::as_str)
        == Some("true")
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn the_console_shows_a_release_live_and_acts_as_the_person_who_opened_it() {
    let ns = signed_namespace("console").await;
    let cleanup = Cleanup {
        namespace: ns.name.clone(),
        rbac: people(&ns).await,
    };
    let _op = Operator::start(&ns.name);
    let alice = api(&as_user("alice", &[]).await, &ns);
    let bob = api(&as_user("bob", &[]).await, &ns);
    let body: CafeDeployment = serde_json::from_value(demo(json!({"fourEyes": true}))).expect("cd");
    alice
        .create(&PostParams::default(), &body)
        .await
        .expect("alice creates demo");
    confirm_until_healthy(&ns, &bob).await;
    let last = history(&bob).await.last().map_or(0, |e| e.seq);
    set_image(&alice, "nginx:1.26")
        .await
        .expect("alice releases nginx:1.26");
    wait_phase(&ns, Phase::WaitingForConfirm).await;

    let as_bob = Console::start(&kubeconfig_as(&ns, "bob"), &["-n", &ns.name]);
    let browser = Browser::start().await;
    let release = card(&ns);

    // bob's console shows the release waiting, the grid, who released it.
    browser.open(&as_bob.url).await;
    on_page(&browser, &release, "WaitingForConfirm", 30).await;
    browser
        .wait(
            "Beta done, group 2 waiting in both cells",
            30,
            &format!("const a = (function(){{ {GROUP_STATE} }}).apply(null, [arguments[0], 'cell-a', '1']); \
                      const b = (function(){{ {GROUP_STATE} }}).apply(null, [arguments[0], 'cell-b', '2']); \
                      return a === 'done' && b === 'waiting';"),
            json!([release]),
        )
        .await;
    let text = browser
        .js(
            "return document.querySelector(arguments[0]).innerText;",
            json!([release]),
        )
        .await;
    let text = text.as_str().unwrap_or_default();
    assert!(
        text.contains("Template by alice"),
        "the sign-off line:\n{text}"
    );
    assert!(text.contains("cell-a") && text.contains("cell-b"), "{text}");
    let png = browser.screenshot().await;
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    if let Ok(path) = std::env::var("CAFE_CONSOLE_SCREENSHOT") {
        std::fs::copy(&shot, path).expect("copy the screenshot");
    }

    // bob confirms the Beta, from the keyboard: the dialog says what moves;
    // the grid advances on the same page (no reload).
    browser.js("window.__samePage = true;", json!([])).await;
    browser
        .js(
            "document.querySelector(arguments[0] + ' button[data-verb=\"confirm\"]').focus();",
            json!([release]),
        )
        .await;
    browser.press("\u{E007}").await;
    browser
        .wait(
            "the confirm dialog",
            10,
            "return document.getElementById('dialog').open;",
            json!([]),
        )
        .await;
    let said = browser
        .js(
            "return document.getElementById('dialog').innerText;",
            json!([]),
        )
        .await;
    let said = said.as_str().unwrap_or_default().to_string();
    assert!(
        said.contains("cell-a 1 pod") && said.contains("cell-b 1 pod") && said.contains("(2 pods)"),
        "the dialog says which cells and how many pods: {said}"
    );
    let result = go_and_read(&browser, "result").await;
    assert!(result.contains("confirmed group 2 of 3"), "{result}");
    browser
        .wait(
            "group 2 moving or done without a reload",
            60,
            &format!("const s = (function(){{ {GROUP_STATE} }}).apply(null, [arguments[0], 'cell-a', '2']); \
                      return window.__samePage === true && (s === 'moving' || s === 'done');"),
            json!([release]),
        )
        .await;
    let entry = recorded(&ns, HistoryAction::Confirmed, Some(2), last).await;
    assert_eq!(entry.by, "bob", "the console acted as bob: {entry:?}");

    // alice's console: four-eyes refuses her, in the API server's words.
    wait_phase(&ns, Phase::WaitingForConfirm).await;
    let as_alice = Console::start(&kubeconfig_as(&ns, "alice"), &["-n", &ns.name]);
    browser.open(&as_alice.url).await;
    act(&browser, &release, "confirm").await;
    let error = go_and_read(&browser, "error").await;
    assert!(
        error.contains("Error from server (Forbidden)")
            && error.contains("four-eyes")
            && error.contains("alice changed the template"),
        "alice's refusal, verbatim: {error}"
    );
    assert!(
        !confirmed(&bob.get("demo").await.expect("demo")),
        "nothing was confirmed"
    );

    // dave may only look: the buttons are disabled and say why; a forced
    // request from his page meets the API server's 403.
    let as_dave = Console::start(&kubeconfig_as(&ns, "dave"), &["-n", &ns.name]);
    browser.open(&as_dave.url).await;
    on_page(&browser, &release, "WaitingForConfirm", 30).await;
    let why = browser
        .wait(
            "a disabled confirm button that says why",
            30,
            "const b = document.querySelector(arguments[0] + ' button[data-verb=\"confirm\"]'); \
             return b && b.disabled ? document.querySelector(arguments[0]).innerText : null;",
            json!([release]),
        )
        .await;
    assert!(
        why.as_str()
            .unwrap_or_default()
            .contains("dave) may not patch cafedeployments"),
        "{why}"
    );
    let forced = browser
        .js(
            "const x = new XMLHttpRequest(); x.open('POST', '/api/act', false); \
             x.setRequestHeader('Content-Type', 'application/json'); \
             x.setRequestHeader('X-Cafe-Token', document.querySelector('meta[name=\"cafe-token\"]').content); \
             x.send(JSON.stringify({verb: 'confirm', namespace: arguments[0], name: 'demo'})); \
             return [x.status, x.responseText];",
            json!([ns.name]),
        )
        .await;
    assert_eq!(forced[0], 403, "dave's forced confirmation: {forced}");
    assert!(
        forced[1].as_str().unwrap_or_default().contains("forbidden")
            && forced[1].as_str().unwrap_or_default().contains("dave"),
        "the API server's RBAC refusal: {forced}"
    );

    // Another site cannot act through bob's console: its form, posted
    // across origins as a browser posts it, is refused; so is a request
    // with the token but a foreign Origin, or one without the token.
    let form = format!(
        "<!doctype html><form method=post enctype=text/plain action=\"{}api/act\">\
         <input name='{{\"verb\":\"confirm\",\"namespace\":\"{}\",\"name\":\"demo\",\"x\":\"' value='\"}}'>\
         </form><script>document.forms[0].submit()</script>",
        as_bob.url, ns.name
    );
    let other_site = serve_page(form).await;
    browser
        .open(&format!("http://127.0.0.1:{other_site}/"))
        .await;
    let answered = browser
        .wait(
            "the console's answer to another site's form",
            20,
            "return location.href.endsWith('/api/act') ? document.body.innerText : null;",
            json!([]),
        )
        .await;
    assert!(
        answered
            .as_str()
            .unwrap_or_default()
            .contains("another origin"),
        "{answered}"
    );
    let token = token_of(as_bob.port()).await;
    let confirm_body = json!({"verb": "confirm", "namespace": ns.name, "name": "demo"}).to_string();
    let (code, said) = post(
        as_bob.port(),
        &[("Origin", "http://evil.example"), ("X-Cafe-Token", &token)],
        &confirm_body,
    )
    .await;
    assert_eq!(
        (code, said.contains("another origin")),
        (403, true),
        "{said}"
    );
    let (code, said) = post(as_bob.port(), &[], &confirm_body).await;
    assert_eq!((code, said.contains("token")), (403, true), "{said}");
    assert!(
        !confirmed(&bob.get("demo").await.expect("demo")),
        "nothing was confirmed"
    );

    // bob's console listens on 127.0.0.1 only.
    if let Some(ip) = non_loopback_address() {
        let refused = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::new(ip, as_bob.port()),
            Duration::from_secs(2),
        );
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
            "a connection to {ip}:{} must be refused: {refused:?}",
            as_bob.port()
        );
    } else {
        panic!("this machine has no non-loopback address to try");
    }

    // A read-only console: disabled buttons, and the server refuses too.
    let read_only = Console::start(&kubeconfig_as(&ns, "bob"), &["-n", &ns.name, "--read-only"]);
    browser.open(&read_only.url).await;
    browser
        .wait(
            "read-only buttons",
            30,
            "const b = document.querySelector(arguments[0] + ' button[data-verb=\"confirm\"]'); return b && b.disabled;",
            json!([release]),
        )
        .await;
    let token = token_of(read_only.port()).await;
    let (code, said) = post(read_only.port(), &[("X-Cafe-Token", &token)], &confirm_body).await;
    assert_eq!((code, said.contains("read-only")), (403, true), "{said}");

    // carol pauses from kubectl: bob's page shows it within 2 s.
    browser.open(&as_bob.url).await;
    on_page(&browser, &release, "WaitingForConfirm", 30).await;
    crate::support::kubectl::kubectl(
        &ns.name,
        &[
            "--kubeconfig",
            &kubeconfig_as(&ns, "carol"),
            "patch",
            "cafedeployment",
            "demo",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"strategy":{"pause":true}}}"#,
        ],
    );
    let paused_at = Instant::now();
    on_page(&browser, &release, "Paused", 10).await;
    let seen = paused_at.elapsed();
    println!(
        "console: carol's pause reached bob's page in {} ms",
        seen.as_millis()
    );
    assert!(
        seen < Duration::from_secs(2),
        "the pause took {seen:?} to reach the page"
    );

    // bob resumes from the page.
    act(&browser, &release, "resume").await;
    let result = go_and_read(&browser, "result").await;
    assert!(result.contains("resumed"), "{result}");
    on_page(&browser, &release, "WaitingForConfirm", 30).await;

    // bob freezes his namespace from the page; the banner names him and the
    // reason; he thaws it.
    act(&browser, "body", "freeze").await;
    browser
        .type_into("#dialog [name=\"reason\"]", "console story: hold")
        .await;
    browser
        .type_into("#dialog [name=\"namespaces\"]", &ns.name)
        .await;
    let result = go_and_read(&browser, "result").await;
    assert!(
        result.contains("ReleaseFreeze") && result.contains("by bob"),
        "{result}"
    );
    let frozen = browser
        .wait(
            "the freeze banner on the release",
            30,
            "const c = document.querySelector(arguments[0]); \
             return c && c.innerText.includes('Frozen by ReleaseFreeze') ? c.innerText : null;",
            json!([release]),
        )
        .await;
    let frozen = frozen.as_str().unwrap_or_default();
    assert!(
        frozen.contains("by bob") && frozen.contains("console story: hold"),
        "{frozen}"
    );
    act(&browser, "body", "thaw").await;
    let result = go_and_read(&browser, "result").await;
    assert!(result.contains("thawed by bob"), "{result}");
    browser
        .wait(
            "the freeze banner gone",
            30,
            "const c = document.querySelector(arguments[0]); \
             return c && !c.innerText.includes('Frozen by ReleaseFreeze');",
            json!([release]),
        )
        .await;

    // bob rolls back from the page, to the revision the dialog offers first
    // (the one before nginx:1.26).
    act(&browser, &release, "rollback").await;
    let offered = browser
        .wait(
            "the revisions to choose from",
            20,
            "const d = document.getElementById('dialog'); \
             return d.querySelector('input[type=radio]') ? d.innerText : null;",
            json!([]),
        )
        .await;
    assert!(
        offered.as_str().unwrap_or_default().contains("nginx:1.25"),
        "{offered}"
    );
    let result = go_and_read(&browser, "result").await;
    assert!(result.contains("rolling back to revision 1"), "{result}");
    let back = recorded(&ns, HistoryAction::RolledBack, None, entry.seq).await;
    assert_eq!(back.by, "bob", "{back:?}");

    // A phone-width window: the page fits (tables scroll in their own box).
    browser.resize(390, 844).await;
    let fits = browser
        .wait(
            "the page at phone width",
            10,
            "return document.documentElement.scrollWidth <= window.innerWidth + 1 \
                 ? 'fits' : document.documentElement.scrollWidth + ' > ' + window.innerWidth;",
            json!([]),
        )
        .await;
    assert_eq!(fits, "fits", "horizontal page scroll at 390px");
    drop(cleanup);
}

/// Waits until the page shows the release in `phase`.
async fn on_page(browser: &Browser, release: &str, phase: &str, secs: u64) {
    browser
        .wait(
            &format!("{release} {phase} on the page"),
            secs,
            "const p = document.querySelector(arguments[0] + ' .phase'); \
             return !!p && p.getAttribute('data-phase') === arguments[1];",
            json!([release, phase]),
        )
        .await;
}

/// Removes what the story made outside its namespace (its cluster roles and
/// freezes), also when it fails.
struct Cleanup {
    namespace: String,
    rbac: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut names: Vec<String> = Vec::new();
        for n in &self.rbac {
            names.push(format!("clusterrolebinding/{n}"));
            names.push(format!("clusterrole/{n}"));
        }
        let freezes = Command::new("kubectl")
            .args(["get", "releasefreezes", "-o", "json"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .unwrap_or_default();
        for f in freezes["items"].as_array().into_iter().flatten() {
            if f["spec"]["namespaces"] == json!([self.namespace]) {
                names.push(format!(
                    "releasefreeze/{}",
                    f["metadata"]["name"].as_str().unwrap_or_default()
                ));
            }
        }
        let _ = Command::new("kubectl")
            .args(["delete", "--ignore-not-found", "--wait=false"])
            .args(&names)
            .output();
    }
}

/// Another site: serves `html` on a free port of 127.0.0.1 to whoever asks.
async fn serve_page(html: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    port
}

/// The token a console's page carries, read as a program would (no browser).
async fn token_of(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut page = String::new();
    stream.read_to_string(&mut page).await.expect("read");
    page.split("name=\"cafe-token\" content=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("the page names its token")
        .to_string()
}
