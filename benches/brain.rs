//! Decision cost of the NPC brain's plain logic, per utterance and per token.
//!
//! Budget (NPC brain issue): address detection < 50 µs per utterance with 10 NPCs.

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use glyphoxa_pipeline::address::{Address, AddressBook, AddressState, NoTarget};
use glyphoxa_pipeline::campaign::{NpcDefinition, VoiceSpec};
use glyphoxa_pipeline::roster::{Npc, NpcId, Roster};
use glyphoxa_pipeline::splitter::SentenceSplitter;

const ADDRESS_BUDGET: Duration = Duration::from_micros(50);

const NAMES: [&str; 10] = [
    "Grimble",
    "Elara Moonwhisper",
    "The Chronicler",
    "Sildar Hallwinter",
    "Gundren Rockseeker",
    "Sister Garaele",
    "Toblen Stonehill",
    "Linene Graywind",
    "Halia Thornton",
    "Glyphoxa",
];

const UTTERANCES: [&str; 8] = [
    "Grimble, what do you have on tap tonight?",
    "I think we should head to the old manor before the Redbrands find us, what do you all say?",
    "Sildar, did you see where the goblins took Gundren?",
    "hmm, okay, let me think about that for a moment",
    "Glyphox or, are you listening to me?",
    "and then what happened after the cave collapsed and everyone ran out screaming",
    "mhm",
    "Halia, how much for the information about the Zhentarim?",
];

fn book() -> AddressBook {
    let npcs = NAMES
        .iter()
        .map(|name| Npc {
            id: NpcId::from_name(name),
            definition: NpcDefinition {
                name: (*name).into(),
                personality: "x".into(),
                voice: VoiceSpec::default(),
                address_only: false,
                gm_helper: false,
            },
            muted: false,
        })
        .collect();
    AddressBook::new(&Roster::new(npcs), Duration::from_secs(30))
}

fn address(c: &mut Criterion) {
    let book = book();
    let state = AddressState::default();
    let now = tokio::time::Instant::now();
    let mut group = c.benchmark_group("brain");
    group.throughput(Throughput::Elements(UTTERANCES.len() as u64));
    group.bench_function("address_per_utterance_10_npcs", |b| {
        b.iter(|| {
            let mut addressed = 0;
            for utterance in UTTERANCES {
                if std::hint::black_box(book.decide(utterance, &|_| false, &state, now))
                    != Address::Nobody(NoTarget::Unaddressed)
                {
                    addressed += 1;
                }
            }
            addressed
        })
    });
    let reply = "Welcome to the Sleeping Giant, traveller. Ale is 3.5 copper, e.g. cheap. *grumbles* Mr. Stonehill sells bread... if you ask nicely. What'll it be?";
    let tokens: Vec<String> = reply.split_inclusive(' ').map(str::to_string).collect();
    group.throughput(Throughput::Elements(tokens.len() as u64));
    group.bench_function("splitter_per_token", |b| {
        b.iter(|| {
            let mut splitter = SentenceSplitter::new(&NAMES);
            let mut sentences = 0;
            for token in &tokens {
                sentences += splitter.push(token).len();
            }
            sentences + usize::from(splitter.finish().is_some())
        })
    });
    group.finish();
}

/// Worst utterance cost, measured directly, printed next to the budget.
fn budget_report() {
    let book = book();
    let state = AddressState::default();
    let now = tokio::time::Instant::now();
    let mut worst = Duration::ZERO;
    let mut total = Duration::ZERO;
    let rounds = 2_000;
    for _ in 0..rounds {
        for utterance in UTTERANCES {
            let started = Instant::now();
            std::hint::black_box(book.decide(utterance, &|_| false, &state, now));
            let took = started.elapsed();
            total += took;
            worst = worst.max(took);
        }
    }
    let mean = total / (rounds * UTTERANCES.len() as u32);
    println!();
    println!("address detection, 10 NPCs, {} utterances × {rounds}", UTTERANCES.len());
    println!(
        "  mean {:>6.2} µs   worst {:>6.2} µs   budget < {:.0} µs   {}",
        mean.as_secs_f64() * 1e6,
        worst.as_secs_f64() * 1e6,
        ADDRESS_BUDGET.as_secs_f64() * 1e6,
        if mean < ADDRESS_BUDGET { "OK" } else { "OVER BUDGET" }
    );
}

criterion_group!(benches, address);

fn main() {
    benches();
    budget_report();
    Criterion::default().configure_from_args().final_summary();
}
