//! A plan cut into stages (`stages`) and run on three simulated shards, each over its own
//! `MemoryStore`, records routed between them by the slot of their key (through the bytes they
//! cross shards as): the answers are those of one shard holding every key.

use std::rc::Rc;

use rustpython_vm::{PyObjectRef, VirtualMachine};

use super::*;
use crate::cluster::slots::key_slot;
use crate::cluster::wire::Writer;
use crate::engine::stages;
use crate::engine::{Execution, Waiting, records_arg};
use crate::python::transfer::{decode_records, encode_record};
use crate::python::{RawPlan, Runtime};

const SHARDS: usize = 3;

/// The data set: numbers and words, every key on the shard its slot says.
fn keys() -> Vec<(String, KeyValue)> {
    let words = ["apple", "pear", "fig", "plum", "kiwi"];
    (0..120)
        .map(|i| match i % 2 {
            0 => (format!("n{i}"), string(&(i % 13).to_string())),
            _ => (format!("w{i}"), string(words[i % words.len()])),
        })
        .collect()
}

fn shard_of(key: &[u8]) -> usize {
    usize::from(key_slot(key)) % SHARDS
}

/// Runs `plan` (one stage's) over `store` to its end: its records, and its errors.
fn run_stage(runtime: &Runtime, plan: RawPlan, store: Rc<MemoryStore>) -> (Vec<PyObjectRef>, Vec<String>) {
    let _installed = crate::store::install(store.clone());
    let state = Some(JobState::execution(Default::default(), false));
    let _job = runtime.enter_job(JobContext { state, store: store.clone(), abort: Abort::new(), owner: None });
    runtime.enter(|vm| {
        let waiting = Waiting { owner: 0, allowed: false };
        let mut execution = Execution::start(vm, plan, store, false, waiting).unreplied();
        let ended = execution.drive(vm).unwrap_or_else(|| execution.end(vm));
        (ended.records.take(), ended.report.errors)
    })
}

/// Every shard's store (its keys) and plan, rebuilt from the script as a peer does.
fn shards(runtime: &Runtime, script: &str) -> Vec<(Rc<MemoryStore>, RawPlan, Vec<stages::Stage>)> {
    (0..SHARDS)
        .map(|shard| {
            let mine = keys().into_iter().filter(|(k, _)| shard_of(k.as_bytes()) == shard);
            let store = Rc::new(MemoryStore::new(mine));
            let ScriptOutcome::Run(plan) = runtime.run_script(script, store.clone(), Abort::new(), None, None) else {
                panic!("the script runs no plan");
            };
            let cut = runtime.enter(|vm| stages::stages(vm, &plan.steps)).expect("the plan cuts");
            (store, plan, cut)
        })
        .collect()
}

/// Where `shard`'s records of a stage go by `route`, crossing as bytes to another shard.
fn route(
    vm: &VirtualMachine,
    shard: usize,
    route: Option<&stages::Route>,
    records: Vec<PyObjectRef>,
    next: &mut [Vec<PyObjectRef>],
    errors: &mut Vec<String>,
) {
    for record in records {
        let to = match route.map(|route| stages::route_key(vm, route, &record)) {
            None => shard,
            Some(Ok(Some(key))) => shard_of(&key),
            Some(Ok(None)) => 0,
            Some(Err(text)) => {
                errors.push(text);
                continue;
            }
        };
        if to == shard {
            next[to].push(record);
            continue;
        }
        let mut bytes = Writer::default();
        match encode_record(vm, &record, &mut bytes) {
            Ok(()) => next[to].extend(decode_records(vm, &bytes.bytes).expect("what was sent reads back")),
            Err(text) => errors.push(text),
        }
    }
}

/// `script`'s answer on three shards: the initiator's (shard 0) results and every shard's
/// errors, results as strings in a stable order.
fn on_three_shards(script: &str) -> (Vec<String>, Vec<String>) {
    let script = script.to_owned();
    on_runtime(move |runtime| {
        let shards = shards(runtime, &script);
        let mut inputs: Vec<Option<Vec<PyObjectRef>>> = vec![None; SHARDS];
        let mut errors = Vec::new();
        for stage in 0..shards[0].2.len() {
            let mut next: Vec<Vec<PyObjectRef>> = vec![Vec::new(); SHARDS];
            for (shard, (store, plan, cut)) in shards.iter().enumerate() {
                let steps = cut[stage].steps.clone();
                let raw = match inputs[shard].take() {
                    None => RawPlan {
                        reader: plan.reader.clone(),
                        arg: plan.arg.clone(),
                        steps,
                        options: plan.options.clone(),
                    },
                    Some(records) => runtime.enter(|vm| RawPlan {
                        reader: "Records".to_owned(),
                        arg: records_arg(vm, records),
                        steps,
                        options: vm.ctx.new_dict().into(),
                    }),
                };
                let (records, stage_errors) = run_stage(runtime, raw, store.clone());
                errors.extend(stage_errors);
                runtime.enter(|vm| route(vm, shard, cut[stage].route.as_ref(), records, &mut next, &mut errors));
            }
            inputs = next.into_iter().map(Some).collect();
        }
        let results = inputs[0].take().unwrap_or_default();
        let mut results: Vec<String> = runtime.enter(|vm| {
            results
                .iter()
                .map(|r| match crate::python::to_reply(r, vm) {
                    Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect()
        });
        results.sort();
        (results, errors)
    })
}

fn on_one_shard(script: &str) -> (Vec<String>, Vec<String>) {
    let ran = run(MemoryStore::new(keys()), script);
    let mut results = ran.results();
    results.sort();
    (results, ran.errors())
}

fn same_on_one_and_three(script: &str) {
    let one = on_one_shard(script);
    assert!(one.1.is_empty(), "{script}: {:?}", one.1);
    assert!(!one.0.is_empty(), "{script} answers something");
    assert_eq!(on_three_shards(script), one, "{script}");
}

#[test]
fn every_operation_that_moves_records_answers_as_on_one_shard() {
    for script in [
        "GB().count().run()",
        "GB().countby(lambda r: r['value']).run()",
        "GB().groupby(lambda r: r['value'], lambda k, a, r: (a or 0) + 1).run()",
        "GB().batchgroupby(lambda r: r['value'], lambda k, rs: len(rs)).run()",
        "GB().aggregateby(lambda r: r['value'], 0, lambda k, a, r: a + 1, lambda k, a, r: a + r).run()",
        "GB().aggregate(0, lambda a, r: a + 1, lambda a, r: a + r).run()",
        "GB().filter(lambda r: r['value'].isdigit()).map(lambda r: int(r['value'])).avg().run()",
        "GB().map(lambda r: r['value']).distinct().run()",
        "GB().filter(lambda r: r['key'].startswith('n')).map(lambda r: int(r['value'])).sort().run()",
        "GB().map(lambda r: r['key']).repartition(lambda r: r[::-1]).collect().run()",
        "GB().flatmap(lambda r: [r['key'], (r['key'], 1.5, None, b'x', {1}, True)]).run()",
    ] {
        same_on_one_and_three(script);
    }
}

#[test]
fn a_record_that_cannot_cross_is_an_error_of_the_shard_sending_it() {
    let (results, errors) = on_three_shards("GB().map(lambda r: object()).collect().count().run()");
    let initiators = keys().iter().filter(|(k, _)| shard_of(k.as_bytes()) == 0).count();
    assert_eq!(results, [initiators.to_string()]);
    assert_eq!(errors.len(), keys().len() - initiators);
    assert!(errors.iter().all(|e| e.contains("serializ") && e.contains("'object'")), "{errors:?}");
}

#[test]
fn records_cross_shards_as_what_they_were() {
    on_runtime(|runtime| {
        runtime.enter(|vm| {
            let script = "[None, True, False, 0, -7, 2**70, -2**65, 1.25, float('inf'), 'é', b'\\x00\\xff', \
                          [1, [2]], (3, (4,)), {'a': {1: None}}, {5, 6}, {'k': (b'', [])}]";
            let value = vm.run_block_expr(vm.new_scope_with_builtins(), script).expect("the literal evaluates");
            let mut bytes = Writer::default();
            encode_record(vm, &value, &mut bytes).expect("every type crosses");
            let back = decode_records(vm, &bytes.bytes).expect("reads back");
            assert_eq!(back.len(), 1);
            assert!(vm.bool_eq(&back[0], &value).expect("comparable"), "{:?}", back[0].repr(vm).map(|s| s.to_string()));
            // A truncated or hostile frame is an error, never a panic.
            for cut in 0..bytes.bytes.len() {
                let _ = decode_records(vm, &bytes.bytes[..cut]);
            }
            assert!(decode_records(vm, &[8, 0xff, 0xff, 0xff, 0xff]).is_err());
            assert!(decode_records(vm, &[42]).is_err());
        })
    });
}

#[test]
fn a_record_nested_deeper_than_a_reply_may_be_is_refused() {
    on_runtime(|runtime| {
        runtime.enter(|vm| {
            let mut deep: PyObjectRef = vm.ctx.new_list(Vec::new()).into();
            for _ in 0..5000 {
                deep = vm.ctx.new_list(vec![deep]).into();
            }
            let mut bytes = Writer::default();
            let error = encode_record(vm, &deep, &mut bytes).expect_err("too deep");
            assert!(error.contains("serializ"), "{error}");
        })
    });
}
