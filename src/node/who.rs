//! Who is acting on the operator API, so that submissions and decisions
//! record a person, not just "the operator".
//!
//! On the Unix socket the kernel tells us the caller's uid (`SO_PEERCRED`),
//! which `[[operators]]` maps to a name and role; an unlisted uid is let in
//! (recorded as "uid N") only while `operator.allow_unlisted` is true. On
//! the mutual-TLS operator listener and the desk, the caller is its
//! certificate's node id — or, on the operator listener, the member of
//! staff `[[operators]]` lists for that certificate (`cert = …`, with a
//! name and role), so that a director or deputy at a console acts in their
//! own name when reviewing. An interceptor identifies every call once and
//! leaves the [`Actor`] in the request's extensions for the handlers.

use std::collections::HashMap;

use tonic::Request;
use tonic::transport::server::UdsConnectInfo;
use tracing::warn;

use super::error::Error;
use crate::config::{NodeConfig, StaffRole};

/// The person (or system) behind a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Actor {
    /// The name recorded in what they do.
    pub(crate) name: String,
    /// What they may do.
    pub(crate) role: StaffRole,
}

impl Actor {
    /// The actor a handler was given by the interceptor; a call that did
    /// not pass one (a test calling the service directly) is "operator".
    pub(crate) fn of<T>(req: &Request<T>) -> Self {
        req.extensions().get::<Self>().cloned().unwrap_or(Self {
            name: crate::store::FROM_OPERATOR.to_string(),
            role: StaffRole::Staff,
        })
    }

    /// A system holding a certificate, acting for `staff` if it says so.
    pub(crate) fn certificate(node_id: &str, staff: &str) -> Self {
        let staff = staff.trim();
        Self {
            name: if staff.is_empty() {
                format!("certificate {node_id}")
            } else {
                format!("{staff} (via certificate {node_id})")
            },
            role: StaffRole::Staff,
        }
    }
}

/// The local users of the operator socket, by uid, and the consoles of
/// the operator listener listed by certificate; every clone sees the list
/// replaced on SIGHUP.
#[derive(Debug, Clone)]
pub(crate) struct Staff(super::live::Live<StaffList>);

/// The list in force.
#[derive(Debug, Default)]
struct StaffList {
    by_uid: HashMap<u32, Actor>,
    by_cert: HashMap<String, Actor>,
    allow_unlisted: bool,
}

impl Staff {
    /// The operators a configuration lists.
    pub(crate) fn from_config(cfg: &NodeConfig) -> Self {
        Self(super::live::Live::new(StaffList::from_config(cfg)))
    }

    /// Takes the operators of `cfg` from now on.
    pub(crate) fn update(&self, cfg: &NodeConfig) {
        self.0.set(StaffList::from_config(cfg));
    }

    /// Who is calling on the operator listener with the certificate of
    /// `node_id` (already checked against `operator.allowed`): the member
    /// of staff listed for it, else the certificate itself.
    pub(crate) fn by_certificate(&self, node_id: &str) -> Actor {
        self.0.get().by_certificate(node_id)
    }

    /// Who is calling on the socket, by the connection's peer credentials.
    pub(crate) fn identify<T>(&self, req: &Request<T>) -> Result<Actor, Error> {
        self.0.get().identify(req)
    }
}

impl StaffList {
    fn from_config(cfg: &NodeConfig) -> Self {
        let actor = |op: &crate::config::Operator| Actor {
            name: op.name.trim().to_string(),
            role: op.role,
        };
        Self {
            by_uid: cfg
                .operators
                .iter()
                .filter_map(|op| Some((op.uid?, actor(op))))
                .collect(),
            by_cert: cfg
                .operators
                .iter()
                .filter_map(|op| Some((op.cert.clone()?, actor(op))))
                .collect(),
            allow_unlisted: cfg.operator.allow_unlisted,
        }
    }

    fn by_certificate(&self, node_id: &str) -> Actor {
        self.by_cert
            .get(node_id)
            .cloned()
            .unwrap_or_else(|| Actor::certificate(node_id, ""))
    }

    fn identify<T>(&self, req: &Request<T>) -> Result<Actor, Error> {
        let uid = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
            .map(|cred| cred.uid())
            .ok_or(Error::NoCredentials)?;
        match self.by_uid.get(&uid) {
            Some(actor) => Ok(actor.clone()),
            None if self.allow_unlisted => Ok(Actor {
                name: format!("uid {uid}"),
                role: StaffRole::Staff,
            }),
            None => {
                warn!(uid, "refused operator call: uid not in [[operators]]");
                Err(Error::Unlisted(uid))
            }
        }
    }
}
