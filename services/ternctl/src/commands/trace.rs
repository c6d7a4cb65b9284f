//! `ternctl trace ID`: the recorded timeline of one message, found by queue id, trace id or
//! Message-ID.
//!
//! Printed in the order the store recorded the steps (the order of the replicated log,
//! which is causal), one line per step naming the service whose work it was. A Message-ID
//! sent more than once names several traces; each is printed.

use serde::Serialize;
use tern_proto::store::v1::{Trace, TraceRequest};

use super::Ctx;
use crate::output::{self, Table};

#[derive(Serialize)]
struct TraceJson {
    trace_id: String,
    message_ids: Vec<String>,
    queue_ids: Vec<String>,
    created_at: i64,
    events: Vec<StepJson>,
}

#[derive(Serialize)]
struct StepJson {
    at: i64,
    service: String,
    kind: String,
    detail: String,
}

impl From<Trace> for TraceJson {
    fn from(t: Trace) -> Self {
        TraceJson {
            trace_id: t.trace_id,
            message_ids: t.message_ids,
            queue_ids: t.queue_ids,
            created_at: t.created_at,
            events: t
                .events
                .into_iter()
                .map(|e| StepJson {
                    at: e.at,
                    service: e.service,
                    kind: e.kind,
                    detail: e.detail,
                })
                .collect(),
        }
    }
}

fn render(traces: &[TraceJson]) -> String {
    let mut out = String::new();
    for (i, t) in traces.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&output::fields(&[
            ("trace id", t.trace_id.clone()),
            ("message-id", output::or_dash(&t.message_ids.join(", "))),
            ("queue ids", output::or_dash(&t.queue_ids.join(", "))),
            ("first seen", output::time_ms(t.created_at)),
        ]));
        let mut table = Table::new(&["AT", "SERVICE", "STEP", "DETAIL"]);
        for e in &t.events {
            table.row(vec![
                output::time_ms(e.at),
                format!("tern-{}", e.service),
                e.kind.clone(),
                output::or_dash(&e.detail),
            ]);
        }
        out.push_str(&table.render());
        out.push_str(&format!(
            "In a tracing backend (Jaeger, Tempo, ...), look up trace {}.\n",
            t.trace_id
        ));
    }
    out
}

/// Runs `ternctl trace ID`.
pub async fn run(id: &str, ctx: &Ctx) -> anyhow::Result<()> {
    let mut q = ctx.store().await?.queue();
    let traces: Vec<TraceJson> = q
        .trace(TraceRequest { id: id.to_string() })
        .await?
        .into_inner()
        .traces
        .into_iter()
        .map(Into::into)
        .collect();
    ctx.print(&traces, || render(&traces))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_proto::store::v1::TraceEvent;

    #[test]
    fn prints_each_step_with_its_service_in_recorded_order() {
        let t: TraceJson = Trace {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            message_ids: vec!["<m@x>".into()],
            queue_ids: vec!["Q1".into()],
            created_at: 1_700_000_000_000,
            events: vec![
                TraceEvent {
                    at: 1_700_000_000_000,
                    service: "smtp".into(),
                    kind: "received".into(),
                    detail: "from a".into(),
                },
                TraceEvent {
                    at: 1_700_000_000_500,
                    service: "access".into(),
                    kind: "retrieved".into(),
                    detail: String::new(),
                },
            ],
        }
        .into();
        let text = render(&[t]);
        let smtp = text.find("tern-smtp").expect("smtp step");
        let access = text.find("tern-access").expect("access step");
        assert!(smtp < access, "{text}");
        assert!(text.contains("look up trace 4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(text.contains("<m@x>"));
    }
}
