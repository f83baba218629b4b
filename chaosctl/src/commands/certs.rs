//! `chaosctl certs init DIR` and `chaosctl certs issue DIR --name NAME --san ... --role ROLE`: a
//! small CA for one deployment, and the certificates its agents (serverAuth), controllers
//! (clientAuth) and chaosd (both) present, so that TLS and mutual TLS need no other tool.
//!
//! Keys are ECDSA P-256, written with mode 0600 from the start (never chmod-ed afterwards, which
//! would leave a moment where others could read them). Nothing is overwritten without
//! `--force`, and every file is checked before any is written, so a refusal leaves DIR as it was.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::{EXIT_OK, Failure};
use crate::args::{CertRole, CertsAction};

/// The CA's files inside DIR.
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";

/// How far back a certificate's validity starts: a host whose clock is a little behind still
/// accepts it at once.
const BACKDATE: Duration = Duration::minutes(5);

pub fn run(action: CertsAction) -> Result<u8, Failure> {
    match action {
        CertsAction::Init { dir, days, force } => init(&dir, days, force),
        CertsAction::Issue {
            dir,
            name,
            sans,
            role,
            days,
            force,
        } => issue(&dir, &name, &sans, role, days, force),
    }
}

fn init(dir: &Path, days: u32, force: bool) -> Result<u8, Failure> {
    let validity = validity(days)?;
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    refuse_overwrite(&[&cert_path, &key_path], force)?;

    let key = KeyPair::generate().context("cannot make the CA's key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name_of(&format!("chaos CA {}", folder_name(dir)));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params.not_before, params.not_after) = validity;
    let cert = params
        .self_signed(&key)
        .context("cannot make the CA's certificate")?;

    make_dir(dir)?;
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600, force)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644, force)?;
    outln!(
        "made the CA `{}` (key `{}`, mode 0600), valid until {}",
        cert_path.display(),
        key_path.display(),
        day(validity.1)
    );
    outln!(
        "next: `chaosctl certs issue {} --name NAME --san ADDRESS --role agent|controller|chaosd`; controllers trust `{CA_CERT}` as `ca_file`, agents as --client-ca; keep `{CA_KEY}` off the hosts",
        dir.display()
    );
    Ok(EXIT_OK)
}

fn issue(
    dir: &Path,
    name: &str,
    sans: &[String],
    role: CertRole,
    days: u32,
    force: bool,
) -> Result<u8, Failure> {
    check_name(name)?;
    let validity = validity(days)?;
    if sans.is_empty() && role != CertRole::Controller {
        return Err(Failure::Invalid(anyhow!(
            "chaosctl: a `{}` certificate must name the addresses its clients connect to: pass --san ADDR_OR_DNS (e.g. `--san 10.0.0.11 --san agent-1.internal`)",
            role.as_str()
        )));
    }
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    refuse_overwrite(&[&cert_path, &key_path], force)?;
    let issuer = load_ca(dir)?;

    let mut params = CertificateParams::new(sans.to_vec()).map_err(|err| {
        Failure::Invalid(anyhow!(
            "chaosctl: a --san is neither an IP address nor a DNS name ({err}): {}",
            sans.join(", ")
        ))
    })?;
    params.distinguished_name = name_of(name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match role {
        CertRole::Agent => vec![ExtendedKeyUsagePurpose::ServerAuth],
        CertRole::Controller => vec![ExtendedKeyUsagePurpose::ClientAuth],
        CertRole::Chaosd => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = validity;
    let key = KeyPair::generate().context("cannot make the key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .with_context(|| format!("cannot sign `{name}` with the CA in `{}`", dir.display()))?;

    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600, force)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644, force)?;
    let names = if sans.is_empty() {
        "no names".to_string()
    } else {
        format!("names {}", sans.join(", "))
    };
    outln!(
        "issued `{}` ({}: {}; {names}; valid until {}) and its key `{}` (mode 0600)",
        cert_path.display(),
        role.as_str(),
        role.usage(),
        day(validity.1),
        key_path.display()
    );
    outln!("{}", role.next_step(&cert_path, &key_path));
    Ok(EXIT_OK)
}

/// The CA of DIR, to sign with.
fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, Failure> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|err| {
            Failure::Invalid(anyhow!(
                "chaosctl: cannot read `{}` ({err}); make a CA there first with `chaosctl certs init {}`",
                path.display(),
                dir.display()
            ))
        })
    };
    let cert_pem = read(&cert_path)?;
    let key_pem = read(&key_path)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|err| {
        Failure::Invalid(anyhow!(
            "chaosctl: `{}` is not a PEM private key ({err}); it must be the key `chaosctl certs init` wrote",
            key_path.display()
        ))
    })?;
    Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|err| {
        Failure::Invalid(anyhow!(
            "chaosctl: `{}` is not a PEM CA certificate ({err}); it must be the one `chaosctl certs init` wrote",
            cert_path.display()
        ))
    })
}

impl CertRole {
    fn as_str(self) -> &'static str {
        match self {
            CertRole::Agent => "agent",
            CertRole::Controller => "controller",
            CertRole::Chaosd => "chaosd",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            CertRole::Agent => "serverAuth",
            CertRole::Controller => "clientAuth",
            CertRole::Chaosd => "serverAuth and clientAuth",
        }
    }

    fn next_step(self, cert: &Path, key: &Path) -> String {
        let (cert, key) = (cert.display(), key.display());
        match self {
            CertRole::Agent => {
                format!("next: `chaos-agent --tls-cert {cert} --tls-key {key}` on that host")
            }
            CertRole::Controller => format!(
                "next: give the inventory's hosts `cert_file: {cert}` and `key_file: {key}`"
            ),
            CertRole::Chaosd => format!(
                "next: in chaosd's configuration, `tls_cert: {cert}`, `tls_key: {key}` (serving) and `cert_file: {cert}`, `key_file: {key}` (to agents)"
            ),
        }
    }
}

/// NAME becomes two file names in DIR, so it is one plain name.
fn check_name(name: &str) -> Result<(), Failure> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !plain {
        return Err(Failure::Invalid(anyhow!(
            "chaosctl: `--name {name}` must be a plain file name (letters, digits, `.`, `_`, `-`), e.g. `agent-1`"
        )));
    }
    if name == "ca" {
        return Err(Failure::Invalid(anyhow!(
            "chaosctl: `--name ca` would overwrite the CA's own files; pick another name"
        )));
    }
    Ok(())
}

fn validity(days: u32) -> Result<(OffsetDateTime, OffsetDateTime), Failure> {
    if days == 0 {
        return Err(Failure::Invalid(anyhow!(
            "chaosctl: `--days 0` makes a certificate that is never valid; give 1 or more"
        )));
    }
    let now = OffsetDateTime::now_utc();
    Ok((now - BACKDATE, now + Duration::days(i64::from(days))))
}

fn day(at: OffsetDateTime) -> String {
    format!("{}-{:02}-{:02}", at.year(), u8::from(at.month()), at.day())
}

fn name_of(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn folder_name(dir: &Path) -> String {
    std::path::absolute(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

fn refuse_overwrite(paths: &[&PathBuf], force: bool) -> Result<(), Failure> {
    if force {
        return Ok(());
    }
    let existing: Vec<String> = paths
        .iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| format!("`{}`", p.display()))
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    Err(Failure::Invalid(anyhow!(
        "chaosctl: {} already exist{}; pass --force to replace {}",
        existing.join(" and "),
        if existing.len() == 1 { "s" } else { "" },
        if existing.len() == 1 { "it" } else { "them" }
    )))
}

/// DIR and its parents; a new DIR is private to its owner, since it will hold the CA's key.
fn make_dir(dir: &Path) -> Result<(), Failure> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the folder `{}`", dir.display()))?;
    Ok(())
}

/// Writes `path` as a new file created with `mode`. With `force`, an existing file is removed
/// first instead of truncated: a truncated file would keep its old (maybe wider) mode.
fn write_new(path: &Path, content: &[u8], mode: u32, force: bool) -> Result<(), Failure> {
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(Failure::Failed(anyhow!(
                    "cannot replace `{}`: {err}",
                    path.display()
                )));
            }
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}
