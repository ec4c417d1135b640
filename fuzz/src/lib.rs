//! What zhibao's fuzz targets share: a fixed test PKI and clock, and the
//! gRPC decoding path every zhibao service uses.
//!
//! The PKI in `fuzz/pki/` was made once by `zhibao::pki`
//! (`cargo run --example make_pki`) and is read from there at start-up, and
//! every target verifies at the fixed instant in `pki/now.txt`. Ed25519
//! signatures are deterministic, so a crash input reproduces on any machine,
//! at any date, and the committed seeds (valid reports, receipts, hop chains
//! signed with these keys) stay valid.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use ring::signature::Ed25519KeyPair;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use zhibao::trust::{Identity, Trust};

pub mod wire;

/// A node of the fixture PKI.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    /// A county (an origin).
    CountyA,
    /// Another county.
    CountyB,
    /// A relay.
    Relay1,
    /// Another relay.
    Relay2,
    /// The hub.
    Hub,
    /// On the region CRL.
    Revoked,
    /// Its certificate expired a day before [`Fixture::now`].
    Expired,
    /// Its certificate becomes valid a day after [`Fixture::now`].
    NotYetValid,
    /// A valid region certificate without the node-id URI SAN.
    NoNodeId,
    /// A node of another region's CA.
    Foreign,
}

impl Who {
    /// Every fixture node.
    pub const ALL: [Who; 10] = [
        Who::CountyA,
        Who::CountyB,
        Who::Relay1,
        Who::Relay2,
        Who::Hub,
        Who::Revoked,
        Who::Expired,
        Who::NotYetValid,
        Who::NoNodeId,
        Who::Foreign,
    ];

    /// The fixture file stem.
    pub fn name(self) -> &'static str {
        match self {
            Who::CountyA => "county-a",
            Who::CountyB => "county-b",
            Who::Relay1 => "relay-1",
            Who::Relay2 => "relay-2",
            Who::Hub => "hub",
            Who::Revoked => "revoked",
            Who::Expired => "expired",
            Who::NotYetValid => "not-yet-valid",
            Who::NoNodeId => "no-node-id",
            Who::Foreign => "foreign",
        }
    }

    /// Whether the region accepts its signatures at [`Fixture::now`].
    pub fn good(self) -> bool {
        matches!(
            self,
            Who::CountyA | Who::CountyB | Who::Relay1 | Who::Relay2 | Who::Hub
        )
    }
}

/// One fixture node: its certificate and its key.
pub struct Signer {
    /// Which one.
    pub who: Who,
    /// The node id its certificate names (`None` for [`Who::NoNodeId`]).
    pub node_id: Option<String>,
    /// Its certificate, DER.
    pub cert: Vec<u8>,
    key: Ed25519KeyPair,
    identity: Option<Identity>,
}

impl Signer {
    /// Signs with its Ed25519 key.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.key.sign(msg).as_ref().to_vec()
    }

    /// As a zhibao [`Identity`] (every node but [`Who::NoNodeId`], which
    /// `Identity::load` refuses).
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The name it signs under: its node id, or a made-up one.
    pub fn name(&self) -> &str {
        self.node_id.as_deref().unwrap_or("no-node-id")
    }
}

/// The fixture PKI, loaded once per process.
pub struct Fixture {
    /// The region's CA and CRL.
    pub trust: Trust,
    /// The instant every target verifies at.
    pub now: SystemTime,
    signers: Vec<Signer>,
    /// The hub's P-256 companion certificate (DER).
    pub p256_cert: Vec<u8>,
}

impl Fixture {
    /// A fixture node.
    pub fn signer(&self, who: Who) -> &Signer {
        &self.signers[Who::ALL
            .iter()
            .position(|w| *w == who)
            .expect("every Who is loaded")]
    }

    /// The region CRL in force (DER): the only one the fixture CA signed
    /// that still exists.
    pub fn crl_der(&self) -> Vec<u8> {
        self.trust.crl_der().expect("the fixture has a CRL")
    }

    /// Whether `cert` is the certificate of a node the region accepts.
    pub fn is_good_cert(&self, cert: &[u8]) -> bool {
        self.signers.iter().any(|s| s.who.good() && s.cert == cert)
    }

    /// Whether a signature under `cert` may verify at `clock`: a good
    /// certificate, or at another instant than `now` one whose validity
    /// period the model knows only at `now`.
    pub fn may_verify(&self, cert: &[u8], clock: Clock) -> bool {
        self.is_good_cert(cert)
            || (!clock.is_now(self)
                && self
                    .signers
                    .iter()
                    .any(|s| matches!(s.who, Who::Expired | Who::NotYetValid) && s.cert == cert))
    }
}

/// Where the fixture lives: `fuzz/pki/`, read at start-up (the targets
/// always run from a checkout).
pub fn pki_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pki")
}

fn pem(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; make the fixture PKI: cd fuzz && cargo run --example make_pki",
            path.display()
        )
    })
}

fn load(dir: &Path) -> Fixture {
    let trust = Trust::load(&dir.join("ca.pem"), Some(&dir.join("crl.pem")))
        .expect("the fixture CA and CRL load");
    let signers = Who::ALL
        .iter()
        .map(|&who| {
            let (c, k) = (
                dir.join(format!("{}.pem", who.name())),
                dir.join(format!("{}.key", who.name())),
            );
            let cert = rustls_pki_types::CertificateDer::from_pem_slice(&pem(&c))
                .expect("fixture certificate")
                .to_vec();
            let PrivateKeyDer::Pkcs8(pkcs8) =
                PrivateKeyDer::from_pem_slice(&pem(&k)).expect("fixture key")
            else {
                panic!("fixture key {} is not PKCS#8", who.name())
            };
            let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.secret_pkcs8_der())
                .expect("fixture key is Ed25519");
            let identity = Identity::load(&c, &k).ok();
            assert!(
                identity.is_some() || who == Who::NoNodeId,
                "fixture identity {} does not load",
                who.name()
            );
            Signer {
                who,
                node_id: zhibao::trust::node_id_of(&cert),
                cert,
                key,
                identity,
            }
        })
        .collect();
    let p256_cert =
        rustls_pki_types::CertificateDer::from_pem_slice(&pem(&dir.join("hub-p256.pem")))
            .expect("fixture P-256 certificate")
            .to_vec();
    let now = String::from_utf8(pem(&dir.join("now.txt"))).unwrap_or_default();
    let secs: u64 = now.trim().parse().expect("pki/now.txt holds Unix seconds");
    Fixture {
        trust,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        signers,
        p256_cert,
    }
}

/// The fixture, loaded on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let f = load(&pki_dir());
        self_check(&f);
        f
    })
}

/// The fixture must still be accepted by the library as it is now; if
/// `zhibao::pki` or `trust` changed what a valid certificate is, every
/// structured target would silently stop at the signer check.
fn self_check(f: &Fixture) {
    let county = f.signer(Who::CountyA).identity().expect("county-a loads");
    let relay = f.signer(Who::Relay1).identity().expect("relay-1 loads");
    let report = zhibao::proto::Report {
        id: "fixture-self-check".into(),
        origin: county.node_id().into(),
        priority: zhibao::proto::Priority::Routine as i32,
        created_unix_ms: unix_ms(f.now),
        ..Default::default()
    };
    let mut signed = zhibao::envelope::sign(&report, county);
    zhibao::envelope::hops::add(&mut signed, relay, county.node_id(), 1);
    if let Err(e) = zhibao::envelope::open(
        &signed,
        &f.trust,
        &zhibao::envelope::Limits::default(),
        f.now,
    ) {
        panic!(
            "the fixture PKI in fuzz/pki/ is no longer accepted ({e}); regenerate it: \
             cd fuzz && cargo run --example make_pki && cargo run --example make_seeds"
        );
    }
}

/// Unix milliseconds of an instant after 1970.
pub fn unix_ms(t: SystemTime) -> i64 {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(d.as_millis()).expect("before the year 292 million")
}

/// Which certificate a signed message carries.
#[derive(Arbitrary, Debug, Clone)]
pub enum CertChoice {
    /// The signer's own (the only one that can verify).
    Own,
    /// Another fixture node's.
    Other(Who),
    /// The hub's P-256 companion.
    P256,
    /// The own certificate with one byte changed.
    Flip(u16, std::num::NonZeroU8),
    /// Any bytes.
    Raw(Vec<u8>),
}

impl CertChoice {
    /// The certificate bytes for a message signed by `signer`.
    pub fn bytes(&self, f: &Fixture, signer: &Signer) -> Vec<u8> {
        match self {
            CertChoice::Own => signer.cert.clone(),
            CertChoice::Other(w) => f.signer(*w).cert.clone(),
            CertChoice::P256 => f.p256_cert.clone(),
            CertChoice::Flip(at, x) => {
                let mut c = signer.cert.clone();
                let i = usize::from(*at) % c.len();
                c[i] ^= x.get();
                c
            }
            CertChoice::Raw(b) => b.clone(),
        }
    }
}

/// A change to bytes after signing.
#[derive(Arbitrary, Debug, Clone)]
pub enum Tamper {
    /// XOR one byte (index taken modulo the length).
    Flip(u16, std::num::NonZeroU8),
    /// Keep only the first n bytes.
    Truncate(u16),
    /// Append bytes.
    Append(Vec<u8>),
}

impl Tamper {
    /// Applies it.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Tamper::Flip(at, x) => {
                if !bytes.is_empty() {
                    let i = usize::from(*at) % bytes.len();
                    bytes[i] ^= x.get();
                }
            }
            Tamper::Truncate(n) => bytes.truncate(usize::from(*n)),
            Tamper::Append(b) => bytes.extend_from_slice(b),
        }
    }
}

/// The instant a structured case verifies at.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Clock {
    /// [`Fixture::now`].
    Now,
    /// That many seconds from it (either way).
    Offset(i32),
    /// Any Unix time, seconds.
    Unix(u64),
}

impl Clock {
    /// The instant; `None` only where `SystemTime` cannot hold it (the
    /// harness, not zhibao, would panic).
    pub fn at(self, f: &Fixture) -> Option<SystemTime> {
        match self {
            Clock::Now => Some(f.now),
            Clock::Offset(s) if s >= 0 => f
                .now
                .checked_add(Duration::from_secs(s.unsigned_abs().into())),
            Clock::Offset(s) => f
                .now
                .checked_sub(Duration::from_secs(s.unsigned_abs().into())),
            Clock::Unix(s) => SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s)),
        }
    }

    /// Whether it is exactly [`Fixture::now`], where the model knows which
    /// certificates are valid.
    pub fn is_now(self, f: &Fixture) -> bool {
        self.at(f) == Some(f.now)
    }
}

/// What a structured case expects of the verifier: the model is only sure
/// where the case changed nothing it cannot reason about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Must verify.
    Pass,
    /// Must be refused.
    Fail,
    /// No opinion (raw bytes, tampering, another clock).
    Unknown,
}

impl Expect {
    /// Combines what two parts of a case expect: any failure fails, then
    /// any doubt is doubt.
    pub fn and(self, other: Expect) -> Expect {
        match (self, other) {
            (Expect::Fail, _) | (_, Expect::Fail) => Expect::Fail,
            (Expect::Unknown, _) | (_, Expect::Unknown) => Expect::Unknown,
            _ => Expect::Pass,
        }
    }

    /// `Fail` if `bad`.
    pub fn unless(self, bad: bool) -> Expect {
        if bad { self.and(Expect::Fail) } else { self }
    }

    /// `Unknown` if `doubt`.
    pub fn doubt(self, doubt: bool) -> Expect {
        if doubt {
            self.and(Expect::Unknown)
        } else {
            self
        }
    }
}

/// Whether a message signed by `signer` carrying `cert` verifies at `now`
/// (as far as the model knows).
pub fn signer_expect(f: &Fixture, signer: &Signer, cert: &[u8], clock: Clock) -> Expect {
    let ok = Expect::Pass.doubt(!clock.is_now(f));
    if cert == signer.cert.as_slice() {
        // At another instant an expired or not-yet-valid certificate may
        // be valid: the model knows validity periods only at `now`.
        let timed = matches!(signer.who, Who::Expired | Who::NotYetValid);
        if timed && !clock.is_now(f) {
            return Expect::Unknown;
        }
        return ok.unless(!signer.who.good());
    }
    // Any other certificate: a fixture one names a key that did not sign;
    // anything else cannot be a certificate of the region's with this key
    // (that would take forging the CA's signature).
    Expect::Fail
}

/// The item-id rule, written again from its documentation: 1 to 64 bytes of
/// ASCII letters, digits, `-` and `_`.
pub fn id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
