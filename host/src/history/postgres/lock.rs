//! Cross-machine locks: PostgreSQL session advisory locks.
//!
//! Why advisory locks and not a lease table: a lease must be renewed by a
//! heartbeat and expires on a timer, so a paused runner can lose its lease
//! while it still deploys, and a dead one blocks others until the lease
//! runs out. An advisory lock belongs to a database session and goes away
//! the moment the session does: the kernel closes a killed process's
//! socket, and the server, which polls the session with TCP keepalives set
//! by [`Connector::session`], drops a vanished machine's session within
//! about half a minute.
//!
//! One key per (environment, service), taken all or nothing with
//! `pg_try_advisory_lock` (never blocking while holding a part, so two
//! runs cannot deadlock and a run never blocks one whose services are
//! disjoint from its own), polled with jitter until the wait runs out.
//! One more key per deployment id says "this deployment's runner is alive":
//! a `running` record whose key anyone can take was abandoned.
//!
//! Who holds a key is written to `adeploy_locks`, for messages only: a row
//! counts only while its session still holds the advisory lock (checked in
//! `pg_locks`), so a row left by a killed runner is ignored, and replaced by
//! the next holder.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::connect::Connector;
use crate::history::{HistoryError, LockHolder, LockRequest, LockWait};

/// Polling interval while waiting for a lock (before jitter).
const POLL: Duration = Duration::from_millis(250);
/// The key of the retraining lock.
const RETRAIN_KEY: &str = "adeploy\0retrain";

/// A database session that holds advisory locks while it lives.
#[derive(Debug)]
pub(crate) struct LockSession {
    client: Client,
    task: tokio::task::JoinHandle<()>,
    url: String,
}

impl LockSession {
    pub(crate) async fn open(connector: &Connector) -> Result<LockSession, HistoryError> {
        let (client, task) = connector.session().await?;
        Ok(LockSession {
            client,
            task,
            url: connector.url.clone(),
        })
    }

    /// Whether the session (and so its locks) is still there.
    pub(crate) fn is_alive(&self) -> bool {
        !self.client.is_closed() && !self.task.is_finished()
    }

    /// Clears this session's holder rows, then ends the session (which
    /// releases its advisory locks).
    pub(crate) async fn release(self) {
        let cleared = self
            .client
            .execute(
                "DELETE FROM adeploy_locks WHERE backend_pid = pg_backend_pid()",
                &[],
            )
            .await;
        if let Err(err) = cleared {
            tracing::debug!(url = %self.url, %err, "cannot clear the lock holder rows; they expire with the session");
        }
        drop(self.client);
        self.task.abort();
    }

    fn failed(&self, action: &'static str) -> impl Fn(tokio_postgres::Error) -> HistoryError + '_ {
        move |e| {
            if e.as_db_error().is_some() {
                HistoryError::Postgres {
                    url: self.url.clone(),
                    action,
                    source: Box::new(e),
                }
            } else {
                HistoryError::Unreachable {
                    url: self.url.clone(),
                    source: Box::new(e),
                }
            }
        }
    }

    /// Takes every key of `request` at once, waiting up to `wait`.
    pub(crate) async fn lock_services(
        &self,
        request: &LockRequest,
        holder: &LockHolder,
        wait: Duration,
        on_wait: &mut (dyn FnMut(&LockWait) + Send),
    ) -> Result<(), HistoryError> {
        let mut services: Vec<&str> = request.services.iter().map(String::as_str).collect();
        services.sort_unstable();
        services.dedup();
        let mut keys: Vec<i64> = services
            .iter()
            .map(|s| service_key(&request.environment, s))
            .collect();
        keys.push(run_key(&request.deployment_id));
        let start = Instant::now();
        let mut last_reported: Option<Option<LockHolder>> = None;
        loop {
            let got: Vec<i64> = self
                .client
                .query_one(
                    "SELECT COALESCE(array_agg(k), '{}') FROM unnest($1::bigint[]) AS k \
                     WHERE pg_try_advisory_lock(k)",
                    &[&keys],
                )
                .await
                .map_err(self.failed("take the deployment locks"))?
                .get(0);
            if got.len() == keys.len() {
                break;
            }
            if !got.is_empty() {
                self.client
                    .execute(
                        "SELECT pg_advisory_unlock(k) FROM unnest($1::bigint[]) AS k",
                        &[&got],
                    )
                    .await
                    .map_err(self.failed("give back part of the deployment locks"))?;
            }
            let (held, who) = self.holders(&request.environment, &services).await?;
            let waited = start.elapsed();
            if waited >= wait {
                return Err(HistoryError::DeploymentBusy {
                    environment: request.environment.clone(),
                    services: held,
                    holder: who.map(Box::new),
                    waited,
                });
            }
            if last_reported.as_ref() != Some(&who) {
                on_wait(&LockWait {
                    holder: who.clone(),
                    services: held,
                    waited,
                });
                last_reported = Some(who);
            }
            let jitter = rand::thread_rng().gen_range(0..=POLL.as_millis() as u64);
            let pause = (POLL + Duration::from_millis(jitter)).min(wait - waited);
            tokio::time::sleep(pause).await;
        }
        // Ours now: tell the others who holds it.
        let pid = i64::from(holder.pid);
        for service in &services {
            self.client
                .execute(
                    "INSERT INTO adeploy_locks (lock_key, environment, service, deployment_id, \
                     holder_user, holder_host, holder_pid, since, backend_pid) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, pg_backend_pid()) \
                     ON CONFLICT (lock_key) DO UPDATE SET environment = excluded.environment, \
                     service = excluded.service, deployment_id = excluded.deployment_id, \
                     holder_user = excluded.holder_user, holder_host = excluded.holder_host, \
                     holder_pid = excluded.holder_pid, since = excluded.since, \
                     backend_pid = excluded.backend_pid",
                    &[
                        &service_key(&request.environment, service),
                        &request.environment,
                        service,
                        &holder.deployment_id,
                        &holder.user,
                        &holder.host,
                        &pid,
                        &holder.since,
                    ],
                )
                .await
                .map_err(self.failed("record the lock holder"))?;
        }
        Ok(())
    }

    /// Which of `services` are held, and by whom (the earliest live holder).
    async fn holders(
        &self,
        environment: &str,
        services: &[&str],
    ) -> Result<(Vec<String>, Option<LockHolder>), HistoryError> {
        let keys: Vec<i64> = services
            .iter()
            .map(|s| service_key(environment, s))
            .collect();
        let rows = self
            .client
            .query(
                "SELECT l.service, l.deployment_id, l.holder_user, l.holder_host, l.holder_pid, l.since \
                 FROM adeploy_locks l \
                 WHERE l.lock_key = ANY($1) AND EXISTS ( \
                   SELECT 1 FROM pg_locks p WHERE p.locktype = 'advisory' AND p.granted \
                   AND p.pid = l.backend_pid AND p.objsubid = 1 \
                   AND p.classid = ((l.lock_key >> 32) & 4294967295)::oid \
                   AND p.objid = (l.lock_key & 4294967295)::oid) \
                 ORDER BY l.since, l.service",
                &[&keys],
            )
            .await
            .map_err(self.failed("read who holds the deployment locks"))?;
        let mut held = Vec::new();
        let mut holder = None;
        for row in rows {
            let service: String = row.get(0);
            if holder.is_none() {
                let pid: i64 = row.get(4);
                let since: DateTime<Utc> = row.get(5);
                holder = Some(LockHolder {
                    deployment_id: row.get(1),
                    user: row.get(2),
                    host: row.get(3),
                    pid: u32::try_from(pid).unwrap_or_default(),
                    since,
                });
            }
            held.push(service);
        }
        if held.is_empty() {
            // Held by a session that has not written its rows yet.
            held = services.iter().map(|s| s.to_string()).collect();
        }
        Ok((held, holder))
    }

    /// Takes the retraining lock without waiting.
    pub(crate) async fn try_retrain(&self) -> Result<bool, HistoryError> {
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key_of(RETRAIN_KEY)])
            .await
            .map_err(self.failed("take the retraining lock"))?;
        Ok(row.get(0))
    }

    /// Whether the runner of deployment `id` is gone (its key is free).
    /// Must not be asked about a deployment this session runs: advisory
    /// locks are re-entrant, so its own key always looks free to it.
    pub(crate) async fn is_abandoned(&self, id: &str) -> Result<bool, HistoryError> {
        let key = run_key(id);
        let free: bool = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(self.failed("test a deployment's lock"))?
            .get(0);
        if free {
            self.client
                .execute("SELECT pg_advisory_unlock($1)", &[&key])
                .await
                .map_err(self.failed("give back a deployment's lock"))?;
        }
        Ok(free)
    }
}

/// The advisory lock key of a service in an environment.
pub(crate) fn service_key(environment: &str, service: &str) -> i64 {
    key_of(&format!("adeploy\0deploy\0{environment}\0{service}"))
}

/// The advisory lock key held while deployment `id` runs.
pub(crate) fn run_key(id: &str) -> i64 {
    key_of(&format!("adeploy\0run\0{id}"))
}

fn key_of(text: &str) -> i64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}
