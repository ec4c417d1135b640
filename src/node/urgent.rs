//! Urgent connections, served apart from the rest.
//!
//! A child forwards its emergencies and bad news on a second connection,
//! asked for with the ALPN id [`crate::tls::URGENT_ALPN`] (see `forward::session`).
//! The relay listener hands such connections to a thread and a runtime of
//! their own, the thread at a higher priority than the node's other threads
//! where the system allows it ([`NICE`]). An urgent item's bytes are then
//! read, checked and answered as soon as they come, instead of waiting
//! their turn behind the tasks of a hundred routine connections in the
//! shared runtime's queues, which know nothing of classes. The store's
//! writer is still shared; it orders writes by class itself.
//!
//! A child may put any item on such a connection (a routine one is taken,
//! and counted apart in the metrics); what it can make this thread do is
//! bounded by its share of what the node holds (`inflight`), as on any
//! connection.
//!
//! Under a runtime of one thread (as in most tests) there is no thread to
//! set apart, and urgent connections are served like the others.

use std::future::Future;
use std::io;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::tls::PeerStream;

/// The urgent thread's nice value. Raising a thread's priority needs
/// `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows it (systemd:
/// `LimitNICE=`); without either the thread keeps the node's priority, and
/// urgent connections are still served apart.
pub(crate) const NICE: i32 = crate::store::URGENT_NICE;

/// What the accept loop yields.
type Incoming = mpsc::Receiver<Result<PeerStream, io::Error>>;

/// Splits the accept loop's connections into the routine ones and those
/// that asked to be urgent, in order of arrival. Should the urgent side be
/// gone, its connections go with the others.
pub(crate) fn split(mut incoming: Incoming) -> (Incoming, Incoming) {
    let (routine_tx, routine) = mpsc::channel(64);
    let (urgent_tx, urgent) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(conn) = incoming.recv().await {
            let conn = if conn.as_ref().is_ok_and(PeerStream::urgent) {
                match urgent_tx.send(conn).await {
                    Ok(()) => continue,
                    Err(mpsc::error::SendError(conn)) => conn,
                }
            } else {
                conn
            };
            if routine_tx.send(conn).await.is_err() {
                return;
            }
        }
    });
    (routine, urgent)
}

/// Runs `serve` on a thread of its own, at [`NICE`], with a runtime of
/// its own; on the current runtime if that has only one thread. Returns
/// what ends when `serve` has ended. Should the thread or its runtime not
/// start, `serve` is dropped, and with it the receiver of the urgent
/// connections: [`split`] then hands them to the routine server.
pub(crate) fn spawn(
    serve: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let (done_tx, done) = oneshot::channel::<()>();
    let serve = async move {
        serve.await;
        drop(done_tx);
    };
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread
    {
        tokio::spawn(serve);
    } else {
        let started = std::thread::Builder::new()
            .name("zhibao-urgent".into())
            .spawn(move || {
                raise_priority();
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(serve),
                    Err(e) => error!(error = %e,
                        "cannot start the urgent connections' runtime; they are served with the others"),
                }
            });
        if let Err(e) = started {
            error!(error = %e, "cannot start the urgent connections' thread; they are served with the others");
        }
    }
    async move {
        let _ = done.await;
    }
}

fn raise_priority() {
    let me = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(me), NICE) {
        warn!(error = %e, nice = NICE,
            "urgent connections are served apart, but at the node's priority: raising a thread's priority needs CAP_SYS_NICE or RLIMIT_NICE (systemd: LimitNICE=)");
    }
}
