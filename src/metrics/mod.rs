//! Prometheus metrics (`GET /metrics`, OpenMetrics text), kept with `prometheus-client`.
//!
//! Requests are counted by route template (`/files/download`, `/proxy/{port}/{*path}`;
//! `unmatched` for a path no route serves), method and status, with a latency histogram per
//! route. Counters that code far from the HTTP edge bumps (children started and reaped by the
//! reaper, bytes read and written by the accept loop, SSH connections) are process-wide statics:
//! there is one reaper and one set of sockets per process. Live counts (sessions, PTYs, …) are
//! read from the capabilities when the metrics are scraped (`Live`), so nothing else keeps them.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Children started (`Reaper::spawn`, the only way one starts).
pub static PROCESSES_STARTED: LazyLock<Counter> = LazyLock::new(Counter::default);
/// Children the reaper waited for: toolboxd's own and orphans reparented to it.
pub static PROCESSES_REAPED: LazyLock<Counter> = LazyLock::new(Counter::default);
/// Of those, orphans (processes toolboxd did not start, or whose waiter was gone).
pub static ORPHANS_REAPED: LazyLock<Counter> = LazyLock::new(Counter::default);
/// Bytes read from HTTP clients, on every listener (request heads and bodies).
pub static BYTES_IN: LazyLock<Counter> = LazyLock::new(Counter::default);
/// Bytes written to HTTP clients, on every listener.
pub static BYTES_OUT: LazyLock<Counter> = LazyLock::new(Counter::default);
/// Open SSH connections.
pub static SSH_CONNECTIONS: LazyLock<Gauge> = LazyLock::new(Gauge::default);

/// The labels of a served request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: &'static str,
    route: String,
    method: String,
    status: u16,
}

/// The labels of a route.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    listener: &'static str,
    route: String,
}

/// Counts read from the capabilities at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Live {
    /// Sessions (the entrypoint's not counted).
    pub sessions: usize,
    /// PTYs, named and the web terminal's.
    pub ptys: usize,
    /// Running language servers.
    pub lsp_servers: usize,
    /// Interpreter contexts.
    pub interpreter_contexts: usize,
    /// Directories watched by the file watchers (one inotify watch each).
    pub watched_dirs: usize,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The registry and the metrics the HTTP edge records.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    live: [Gauge; 5],
    /// The heap's bytes in use and free (`crate::memory::heap`), read at scrape time.
    heap: [Gauge; 2],
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    /// Every metric, registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("toolboxd");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by listener, route template, method and status",
            requests.clone(),
        );
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to the answer's head, by listener and route template",
            latency.clone(),
        );
        registry.register(
            "http_received_bytes",
            "Bytes read from HTTP clients (all listeners)",
            BYTES_IN.clone(),
        );
        registry.register(
            "http_sent_bytes",
            "Bytes written to HTTP clients (all listeners)",
            BYTES_OUT.clone(),
        );
        registry.register(
            "processes_started",
            "Child processes started",
            PROCESSES_STARTED.clone(),
        );
        registry.register(
            "processes_reaped",
            "Exited processes reaped (children and orphans)",
            PROCESSES_REAPED.clone(),
        );
        registry.register(
            "orphans_reaped",
            "Exited orphans reaped (processes reparented to toolboxd)",
            ORPHANS_REAPED.clone(),
        );
        registry.register(
            "ssh_connections",
            "Open SSH connections",
            SSH_CONNECTIONS.clone(),
        );
        let live: [Gauge; 5] = Default::default();
        let names = [
            ("sessions", "Live sessions"),
            ("ptys", "Live PTYs"),
            ("lsp_servers", "Running language servers"),
            ("interpreter_contexts", "Interpreter contexts"),
            (
                "watched_directories",
                "Directories watched by file watchers",
            ),
        ];
        for ((name, help), gauge) in names.into_iter().zip(&live) {
            registry.register(name, help, gauge.clone());
        }
        let heap: [Gauge; 2] = Default::default();
        registry.register(
            "heap_in_use_bytes",
            "Bytes the daemon's heap has allocated (glibc mallinfo2)",
            heap[0].clone(),
        );
        registry.register(
            "heap_free_bytes",
            "Bytes in the daemon's heap's free chunks (fragmentation; trimmed pages included)",
            heap[1].clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            live,
            heap,
        }
    }

    /// Records one answered request on `listener` (`toolbox`, `terminal` or `sdk_api`).
    pub fn observe(
        &self,
        listener: &'static str,
        route: &str,
        method: &str,
        status: u16,
        seconds: f64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                listener,
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                listener,
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// The OpenMetrics text, with the live counts `live`.
    pub fn render(&self, live: Live) -> String {
        let counts = [
            live.sessions,
            live.ptys,
            live.lsp_servers,
            live.interpreter_contexts,
            live.watched_dirs,
        ];
        for (gauge, count) in self.live.iter().zip(counts) {
            gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        if let Some(heap) = crate::memory::heap() {
            for (gauge, bytes) in self.heap.iter().zip([heap.in_use, heap.free]) {
                gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_live_counts_are_rendered() {
        let metrics = Metrics::new();
        metrics.observe("toolbox", "/files", "GET", 200, 0.002);
        metrics.observe("toolbox", "/files", "GET", 200, 0.003);
        let text = metrics.render(Live {
            sessions: 3,
            ..Live::default()
        });
        assert!(
            text.contains(
                r#"toolboxd_http_requests_total{listener="toolbox",route="/files",method="GET",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains("toolboxd_sessions 3"), "{text}");
        // The heap gauges come from glibc's allocator.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let in_use = text
                .lines()
                .find_map(|line| line.strip_prefix("toolboxd_heap_in_use_bytes "))
                .and_then(|value| value.parse::<u64>().ok());
            assert!(in_use.is_some_and(|bytes| bytes > 0), "{text}");
        }
        assert!(
            text.contains(r#"toolboxd_http_request_duration_seconds_count{listener="toolbox",route="/files"} 2"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
