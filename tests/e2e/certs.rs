//! `chaosctl certs init/issue`: the files, their modes and what the certificates say;
//! then a built `chaos-agent` with `--client-ca` on 127.0.0.1, serving those certificates, and
//! `chaosctl agents` against it: with a client certificate it works, without one (or with one
//! from another CA) the refusal says what to do, `/healthz` needs none; and the TLS mistakes
//! users make (a server certificate from another CA, a CA certificate as the server's, a name
//! the certificate lacks) are told in words.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use x509_parser::prelude::*;

use chaos_tests::support::{Test, free_port};
use chaos_tests::{eventually, skip};

const TOKEN: &str = "certs-agent-token-0123456789";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// What a PEM certificate file says, read back with x509-parser.
struct Parsed {
    is_ca: Option<bool>,
    server_auth: bool,
    client_auth: bool,
    names: Vec<String>,
    valid_days: i64,
    subject: String,
    issuer: String,
    der: Vec<u8>,
}

fn parse(path: &Path) -> Parsed {
    let bytes = std::fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).expect("a PEM certificate");
    let cert = pem.parse_x509().expect("an X.509 certificate");
    let eku = cert.extended_key_usage().unwrap().map(|e| e.value.clone());
    let names = cert
        .subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|n| match n {
                    GeneralName::DNSName(d) => d.to_string(),
                    GeneralName::IPAddress(ip) if ip.len() == 4 => {
                        std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()
                    }
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    let validity = cert.validity();
    Parsed {
        is_ca: cert.basic_constraints().unwrap().map(|b| b.value.ca),
        server_auth: eku.as_ref().is_some_and(|e| e.server_auth),
        client_auth: eku.as_ref().is_some_and(|e| e.client_auth),
        names,
        valid_days: (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        der: pem.contents.clone(),
    }
}

/// Whether `leaf` carries a signature that `ca`'s key verifies.
fn signed_by(leaf: &Parsed, ca: &Parsed) -> bool {
    let (_, leaf) = X509Certificate::from_der(&leaf.der).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca.der).unwrap();
    leaf.verify_signature(Some(ca.public_key())).is_ok()
}

#[test]
fn certs_init_and_issue_write_a_ca_and_certificates_for_each_role() {
    let t = Test::new();
    let dir = t.path("pki");
    let d = dir.to_str().unwrap();
    t.cmd(&["certs", "init", d])
        .code(0)
        .stdout_has("made the CA");
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir), 0o700, "the CA's folder is private");
    let ca = parse(&dir.join("ca.pem"));
    assert_eq!(ca.is_ca, Some(true));
    assert!(ca.valid_days >= 3650, "{}", ca.valid_days);

    for (name, role, server, client) in [
        ("agent-1", "agent", true, false),
        ("ctl", "controller", false, true),
        ("chaosd", "chaosd", true, true),
    ] {
        t.cmd(&[
            "certs",
            "issue",
            d,
            "--name",
            name,
            "--san",
            "127.0.0.1",
            "agent-1.internal",
            "--role",
            role,
        ])
        .code(0)
        .stdout_has(&format!("issued `{d}/{name}.pem` ({role}:"));
        let key = dir.join(format!("{name}.key"));
        assert_eq!(mode(&key), 0o600, "{name}");
        let cert = parse(&dir.join(format!("{name}.pem")));
        assert_eq!(cert.is_ca, Some(false), "{name}: CA:FALSE written out");
        assert_eq!(
            (cert.server_auth, cert.client_auth),
            (server, client),
            "{name}"
        );
        assert_eq!(cert.names, ["127.0.0.1", "agent-1.internal"], "{name}");
        assert_eq!(cert.subject, format!("CN={name}"));
        assert_eq!(cert.issuer, ca.subject);
        assert!(signed_by(&cert, &ca), "{name} is signed by the CA");
        assert!(
            (365..=366).contains(&cert.valid_days),
            "{name}: {}",
            cert.valid_days
        );
    }
    if Command::new("openssl").arg("version").output().is_ok() {
        let out = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(dir.join("ca.pem"))
            .arg(dir.join("agent-1.pem"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // No overwrite without --force: the files stay as they were.
    let before = std::fs::read(dir.join("agent-1.key")).unwrap();
    t.cmd(&[
        "certs", "issue", d, "--name", "agent-1", "--san", "10.0.0.1", "--role", "agent",
    ])
    .code(2)
    .stderr_has("already exist")
    .stderr_has("pass --force");
    assert_eq!(std::fs::read(dir.join("agent-1.key")).unwrap(), before);
    t.cmd(&["certs", "init", d]).code(2).stderr_has("ca.pem");
    // --force replaces: a new key, created 0600 even where the old file had a wider mode.
    std::fs::set_permissions(
        dir.join("agent-1.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    t.cmd(&[
        "certs", "issue", d, "--name", "agent-1", "--san", "10.0.0.1", "--role", "agent", "--days",
        "30", "--force",
    ])
    .code(0);
    assert_ne!(std::fs::read(dir.join("agent-1.key")).unwrap(), before);
    assert_eq!(mode(&dir.join("agent-1.key")), 0o600);
    let cert = parse(&dir.join("agent-1.pem"));
    assert_eq!(cert.names, ["10.0.0.1"]);
    assert!((30..=31).contains(&cert.valid_days), "{}", cert.valid_days);

    // Mistakes, told with what to do.
    let other = t.path("empty");
    t.cmd(&[
        "certs",
        "issue",
        other.to_str().unwrap(),
        "--name",
        "a",
        "--san",
        "h",
        "--role",
        "agent",
    ])
    .code(2)
    .stderr_has("chaosctl certs init");
    t.cmd(&["certs", "issue", d, "--name", "a", "--role", "agent"])
        .code(2)
        .stderr_has("pass --san");
    t.cmd(&[
        "certs", "issue", d, "--name", "../a", "--san", "h", "--role", "agent",
    ])
    .code(2)
    .stderr_has("plain file name");
}

/// A `chaos-agent` on 127.0.0.1 over TLS, killed when dropped.
struct TlsAgent {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl TlsAgent {
    fn start(t: &Test, name: &str, cert: &Path, key: &Path, client_ca: Option<&Path>) -> TlsAgent {
        let port = free_port();
        let token = t.write("edge.token", &format!("{TOKEN}\n"));
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let log = t.path(&format!("{name}.log"));
        let mut cmd = Command::new(chaos_tests::bins::chaos_agent());
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--token-file")
            .arg(&token)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .arg("--state-dir")
            .arg(t.path(&format!("{name}-state")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(ca) = client_ca {
            cmd.arg("--client-ca").arg(ca);
        }
        let child = cmd.spawn().expect("start chaos-agent");
        eventually(Duration::from_secs(10), "chaos-agent listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        TlsAgent { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TlsAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An inventory of one host, `edge`, at `url`, with these extra keys.
fn inventory(t: &Test, file: &str, url: &str, extra: &str) -> PathBuf {
    let token = t.path("edge.token");
    t.write(
        file,
        &format!(
            "hosts:\n  edge: {{agent: \"{url}\", token_file: \"{}\"{extra}}}\n",
            token.display()
        ),
    )
}

/// `chaosctl agents --inventory INV`.
fn agents(t: &Test, inventory: &Path) -> chaos_tests::support::Output {
    t.cmd(&["agents", "--inventory", inventory.to_str().unwrap()])
}

#[test]
fn an_agent_with_client_ca_serves_only_controllers_with_its_certificate() {
    let t = Test::new();
    let pki = t.path("pki");
    let other = t.path("other");
    let (p, o) = (pki.to_str().unwrap(), other.to_str().unwrap());
    for args in [
        vec!["certs", "init", p],
        vec![
            "certs",
            "issue",
            p,
            "--name",
            "edge",
            "--san",
            "127.0.0.1",
            "--role",
            "agent",
        ],
        vec!["certs", "issue", p, "--name", "ctl", "--role", "controller"],
        vec!["certs", "init", o],
        vec!["certs", "issue", o, "--name", "ctl", "--role", "controller"],
    ] {
        t.cmd(&args).code(0);
    }
    let agent = TlsAgent::start(
        &t,
        "edge",
        &pki.join("edge.pem"),
        &pki.join("edge.key"),
        Some(&pki.join("ca.pem")),
    );
    let url = format!("https://127.0.0.1:{}", agent.port);
    let ca = format!(", ca_file: \"{}\"", pki.join("ca.pem").display());
    let with = |dir: &Path| {
        format!(
            "{ca}, cert_file: \"{}\", key_file: \"{}\"",
            dir.join("ctl.pem").display(),
            dir.join("ctl.key").display()
        )
    };

    let good = inventory(&t, "good.yaml", &url, &with(&pki));
    agents(&t, &good).code(0).stdout_has("edge");

    let bare = inventory(&t, "bare.yaml", &url, &ca);
    let out = agents(&t, &bare);
    out.code(5)
        .stdout_has("requires a client certificate")
        .stdout_has("`cert_file` and `key_file`");

    let foreign = inventory(&t, "foreign.yaml", &url, &with(&other));
    let out = agents(&t, &foreign);
    out.code(5).stdout_has(&format!(
        "refused our client certificate `{}`",
        other.join("ctl.pem").display()
    ));
    assert!(
        !out.stdout.contains("OtherError") && !out.stdout.contains("AlertReceived"),
        "{}",
        out.stdout
    );
    eventually(
        Duration::from_secs(5),
        "the agent logs the bad client certificate",
        || {
            agent
                .log()
                .contains("the client's certificate was not issued by the CA of --client-ca")
        },
    );
    let audit = std::fs::read_to_string(t.path("edge-state").join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"event\":\"tls_handshake\""), "{audit}");

    // A liveness probe has no certificate and needs none.
    if skip::unless_installed(&["curl"], "curl") {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "--cacert"])
            .arg(pki.join("ca.pem"))
            .arg(format!("{url}/healthz"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "--cacert"])
            .arg(pki.join("ca.pem"))
            .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
            .arg(format!("{url}/v1/health"))
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("client_certificate_required"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn tls_mistakes_are_told_in_words() {
    let t = Test::new();
    let pki = t.path("pki");
    let other = t.path("other");
    let (p, o) = (pki.to_str().unwrap(), other.to_str().unwrap());
    for args in [
        vec!["certs", "init", p],
        vec!["certs", "init", o],
        vec![
            "certs",
            "issue",
            o,
            "--name",
            "edge",
            "--san",
            "127.0.0.1",
            "--role",
            "agent",
        ],
        vec![
            "certs",
            "issue",
            p,
            "--name",
            "named",
            "--san",
            "agent-1.internal",
            "localhost",
            "--role",
            "agent",
        ],
    ] {
        t.cmd(&args).code(0);
    }
    let ca_file = pki.join("ca.pem");
    let trust = format!(", ca_file: \"{}\"", ca_file.display());

    // A server certificate from another CA than the one in `ca_file`.
    let agent = TlsAgent::start(
        &t,
        "foreign",
        &other.join("edge.pem"),
        &other.join("edge.key"),
        None,
    );
    let inv = inventory(
        &t,
        "a.yaml",
        &format!("https://127.0.0.1:{}", agent.port),
        &trust,
    );
    let out = agents(&t, &inv);
    out.code(5).stdout_has(&format!(
        "was not issued by the CA in `ca_file` `{}`; set `ca_file` to the CA that issued it",
        ca_file.display()
    ));
    // The agent logs the refusal when the client's alert reaches it, which may be a moment after
    // chaosctl has exited.
    eventually(Duration::from_secs(5), "the agent logs the refusal", || {
        agent
            .log()
            .contains("the client refused this server's certificate")
    });
    drop(agent);

    // The CA's own certificate as the server's.
    let agent = TlsAgent::start(&t, "ca-as-server", &ca_file, &pki.join("ca.key"), None);
    let inv = inventory(
        &t,
        "b.yaml",
        &format!("https://127.0.0.1:{}", agent.port),
        &trust,
    );
    let out = agents(&t, &inv);
    out.code(5)
        .stdout_has("presents a CA certificate as its own")
        .stdout_has("chaosctl certs issue");
    assert!(!out.stdout.contains("CaUsedAsEndEntity"), "{}", out.stdout);
    drop(agent);

    // A name the certificate does not carry: which was asked for, which it has.
    let agent = TlsAgent::start(
        &t,
        "named",
        &pki.join("named.pem"),
        &pki.join("named.key"),
        None,
    );
    let inv = inventory(
        &t,
        "c.yaml",
        &format!("https://127.0.0.1:{}", agent.port),
        &trust,
    );
    agents(&t, &inv)
        .code(5)
        .stdout_has("not valid for `127.0.0.1`")
        .stdout_has("it names agent-1.internal, localhost")
        .stdout_has("--san 127.0.0.1");
}
