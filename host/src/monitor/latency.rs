//! Network latency as the time a TCP connect takes (no ICMP: it needs raw
//! sockets, and many networks drop it while the services' ports answer).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How one endpoint answered a latency probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointLatency {
    /// The endpoint as configured, `host:port`.
    pub endpoint: String,
    /// Time of the TCP connect that succeeded, in milliseconds (name resolution
    /// not included); `None` when the endpoint did not answer.
    pub ms: Option<f64>,
    /// Why the endpoint did not answer (refused, unreachable, could not be
    /// resolved, no answer within the timeout); `None` when it answered.
    pub error: Option<String>,
}

/// Probes every endpoint (`host:port`) concurrently: resolves it, then opens
/// and closes a TCP connection, trying its addresses in order. The whole
/// probe of one endpoint (resolution included) must finish within `timeout`.
/// The result has one entry per endpoint, in the order given.
///
/// Needs a tokio runtime with the I/O and time drivers.
pub async fn measure_latency(endpoints: &[String], timeout: Duration) -> Vec<EndpointLatency> {
    let mut probes: Vec<Pin<Box<dyn Future<Output = EndpointLatency> + Send + '_>>> = endpoints
        .iter()
        .map(|e| Box::pin(probe(e, timeout)) as Pin<Box<dyn Future<Output = _> + Send + '_>>)
        .collect();
    let mut done: Vec<Option<EndpointLatency>> = (0..probes.len()).map(|_| None).collect();
    // Join on this task: every probe is polled whenever the task wakes, and a
    // finished one is never polled again.
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (probe, slot) in probes.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match probe.as_mut().poll(cx) {
                    Poll::Ready(result) => *slot = Some(result),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

async fn probe(endpoint: &str, timeout: Duration) -> EndpointLatency {
    let outcome = tokio::time::timeout(timeout, connect_time(endpoint)).await;
    let (ms, error) = match outcome {
        Ok(Ok(ms)) => (Some(ms), None),
        Ok(Err(e)) => (None, Some(e)),
        Err(_) => (
            None,
            Some(format!("no answer within {} ms", timeout.as_millis())),
        ),
    };
    EndpointLatency {
        endpoint: endpoint.to_string(),
        ms,
        error,
    }
}

async fn connect_time(endpoint: &str) -> Result<f64, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(endpoint)
        .await
        .map_err(|e| format!("cannot resolve {endpoint}: {e}"))?
        .collect();
    let mut last = format!("{endpoint} resolves to no address");
    for addr in addrs {
        let start = Instant::now();
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                drop(stream);
                return Ok(ms);
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// The median connect time of the endpoints that answered, `None` if none did.
pub fn median_latency(results: &[EndpointLatency]) -> Option<f64> {
    let mut ms: Vec<f64> = results
        .iter()
        .filter_map(|r| r.ms)
        .filter(|v| v.is_finite())
        .collect();
    if ms.is_empty() {
        return None;
    }
    ms.sort_by(f64::total_cmp);
    let mid = ms.len() / 2;
    Some(if ms.len() % 2 == 1 {
        ms[mid]
    } else {
        (ms[mid - 1] + ms[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(endpoint: &str, ms: Option<f64>) -> EndpointLatency {
        EndpointLatency {
            endpoint: endpoint.into(),
            ms,
            error: ms.is_none().then(|| "refused".into()),
        }
    }

    #[tokio::test]
    async fn a_listening_port_answers_and_a_closed_one_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        }; // dropped: nothing listens there any more
        let endpoints = vec![open.clone(), closed.clone(), "127.0.0.1".to_string()];
        let results = measure_latency(&endpoints, Duration::from_secs(2)).await;
        assert_eq!(results.len(), 3);

        assert_eq!(results[0].endpoint, open);
        let ms = results[0].ms.unwrap();
        assert!((0.0..2000.0).contains(&ms), "{results:?}");
        assert_eq!(results[0].error, None);

        assert_eq!(results[1].endpoint, closed);
        assert_eq!(results[1].ms, None);
        let err = results[1].error.as_deref().unwrap().to_lowercase();
        assert!(err.contains("refused"), "{err}");

        // Not host:port: an error, not a panic.
        assert_eq!(results[2].ms, None);
        assert!(results[2].error.is_some(), "{results:?}");

        assert_eq!(median_latency(&results), Some(ms));
        let json = serde_json::to_string(&results[1]).unwrap();
        let back: EndpointLatency = serde_json::from_str(&json).unwrap();
        assert_eq!(back, results[1]);
    }

    #[tokio::test]
    async fn no_endpoints_no_results() {
        let results = measure_latency(&[], Duration::from_millis(100)).await;
        assert!(results.is_empty());
        assert_eq!(median_latency(&results), None);
    }

    #[test]
    fn median_of_the_answered_ones() {
        let r = [
            answered("a:1", Some(3.0)),
            answered("b:1", None),
            answered("c:1", Some(1.0)),
            answered("d:1", Some(10.0)),
        ];
        assert_eq!(median_latency(&r), Some(3.0));
        assert_eq!(median_latency(&r[..3]), Some(2.0));
        assert_eq!(median_latency(&r[1..2]), None);
    }
}
