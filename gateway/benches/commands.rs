//! Slash-command handler time, Discord excluded (harness = false; `cargo bench
//! -p glyphoxa-gateway --bench commands`): each command runs through the router,
//! permission check and handler against SQLite and the in-memory worker,
//! replying into a recorder. Reports p50/p99 per command; the commands that
//! answer without deferring are held to the 5 ms p99 budget (issue: Discord
//! slash commands), since they must answer inside Discord's 3 s window
//! however busy the process is.
//!
//! `GLYPHOXA_BENCH_ITERATIONS` sets the iterations per command (default 300).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use glyphoxa_gateway::commands::testing::{command, dm, id, player, Bench, GUILD, TEXT_CHANNEL};
use glyphoxa_gateway::commands::{Interaction, OptionValue, ENTITY_ADD_MODAL};

/// p99 budget of a command that answers without deferring.
const IMMEDIATE_BUDGET_MS: f64 = 5.0;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

async fn time(bench: &Bench, iterations: usize, make: impl Fn(usize) -> Interaction) -> Vec<Duration> {
    // Warm the connection pool and caches first.
    for i in 0..10 {
        bench.run(make(i)).await;
    }
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let interaction = make(i);
        let began = Instant::now();
        bench.run(interaction).await;
        samples.push(began.elapsed());
    }
    samples.sort();
    samples
}

fn report(label: &str, samples: &[Duration], budget: Option<f64>) -> bool {
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    match budget {
        Some(budget) => {
            let verdict = if p99 <= budget { "within" } else { "OVER" };
            println!("commands/{label:<28} p50 {p50:6.3} ms  p99 {p99:6.3} ms  (budget p99 ≤ {budget} ms: {verdict})");
            p99 <= budget
        }
        None => {
            println!("commands/{label:<28} p50 {p50:6.3} ms  p99 {p99:6.3} ms  (deferred: no budget)");
            true
        }
    }
}

fn main() {
    let iterations: usize = std::env::var("GLYPHOXA_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let all_within = runtime.block_on(async {
        let bench = Bench::new().await;
        for i in 0..40 {
            let fields = BTreeMap::from([
                ("name".to_string(), format!("Place {i}")),
                ("type".to_string(), "location".to_string()),
                ("description".to_string(), "A place on the map.".to_string()),
                ("tags".to_string(), "map".to_string()),
            ]);
            bench
                .run(Interaction::modal_submit(ENTITY_ADD_MODAL, fields, dm()).in_guild(id(GUILD), id(TEXT_CHANNEL)))
                .await;
        }
        let mut within = true;
        println!("commands: {iterations} runs each (SQLite, in-memory worker, Discord excluded)");

        // Answered at once (no defer): modals, lists, autocompletes, refusals.
        within &= report(
            "entity add (modal)",
            &time(&bench, iterations, |_| command("entity", Some("add"))).await,
            Some(IMMEDIATE_BUDGET_MS),
        );
        within &= report(
            "entity list",
            &time(&bench, iterations, |_| command("entity", Some("list"))).await,
            Some(IMMEDIATE_BUDGET_MS),
        );
        within &= report(
            "entity remove (autocomplete)",
            &time(&bench, iterations, |i| {
                Interaction::autocomplete("entity", Some("remove"), "name", &format!("{}", i % 10), dm())
                    .in_guild(id(GUILD), id(TEXT_CHANNEL))
            })
            .await,
            Some(IMMEDIATE_BUDGET_MS),
        );
        within &= report(
            "campaign info",
            &time(&bench, iterations, |_| command("campaign", Some("info"))).await,
            Some(IMMEDIATE_BUDGET_MS),
        );
        within &= report(
            "npc list (no session)",
            &time(&bench, iterations, |_| command("npc", Some("list"))).await,
            Some(IMMEDIATE_BUDGET_MS),
        );
        within &= report(
            "session start (no voice)",
            &time(&bench, iterations, |_| {
                Interaction::command("session", Some("start"), player()).in_guild(id(GUILD), id(TEXT_CHANNEL))
            })
            .await,
            Some(IMMEDIATE_BUDGET_MS),
        );

        // With a session running.
        bench.start_session().await;
        within &= report(
            "feedback (modal)",
            &time(&bench, iterations, |_| command("feedback", None)).await,
            Some(IMMEDIATE_BUDGET_MS),
        );
        within &= report(
            "npc mute (autocomplete)",
            &time(&bench, iterations, |_| {
                Interaction::autocomplete("npc", Some("mute"), "name", "", dm()).in_guild(id(GUILD), id(TEXT_CHANNEL))
            })
            .await,
            Some(IMMEDIATE_BUDGET_MS),
        );
        // Deferred: worker RPCs (in-memory here) and session start/stop.
        report(
            "npc list",
            &time(&bench, iterations, |_| command("npc", Some("list"))).await,
            None,
        );
        report(
            "npc muteall",
            &time(&bench, iterations, |_| command("npc", Some("muteall"))).await,
            None,
        );
        report(
            "npc speak (unknown name)",
            &time(&bench, iterations, |_| {
                command("npc", Some("speak"))
                    .with_option("name", OptionValue::String("Nobody".into()))
                    .with_option("text", OptionValue::String("Hello".into()))
            })
            .await,
            Some(IMMEDIATE_BUDGET_MS),
        );
        let cycles = (iterations / 4).max(10);
        let mut starts = Vec::with_capacity(cycles);
        let mut stops = Vec::with_capacity(cycles);
        for _ in 0..cycles {
            let began = Instant::now();
            bench.run(command("session", Some("stop"))).await;
            stops.push(began.elapsed());
            let began = Instant::now();
            bench.run(command("session", Some("start"))).await;
            starts.push(began.elapsed());
        }
        starts.sort();
        stops.sort();
        report("session start", &starts, None);
        report("session stop", &stops, None);
        within
    });
    if !all_within {
        println!("commands: some immediate command is over its budget");
    }
}
