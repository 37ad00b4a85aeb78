//! What another master sends over the cluster bus: any bytes are a message or a clear refusal
//! (never a panic, never an allocation the input does not pay for), a message reads back as it
//! was written, and any frame of records decodes to records that cross again unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustgears::cluster::message::{Event, Message};
use rustgears::cluster::wire::Writer;
use rustgears::python::Runtime;
use rustgears::python::transfer::{decode_records, encode_record};
use rustgears::stop::WorkerId;

thread_local! {
    static RUNTIME: Runtime = match Runtime::new(WorkerId::default()) {
        Ok(runtime) => runtime,
        Err(e) => panic!("cannot build an interpreter: {e}"),
    };
}

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        assert_eq!(Message::decode(&message.encode()).as_ref(), Ok(&message));
        if let Message::Execution { event: Event::Frame { records, .. }, .. } = &message {
            frame(records);
        }
    }
    frame(data);
});

/// Decoded records encode to bytes that decode to equal records.
fn frame(bytes: &[u8]) {
    RUNTIME.with(|rt| {
        rt.enter(|vm| {
            let Ok(records) = decode_records(vm, bytes) else { return };
            let mut again = Writer::default();
            for record in &records {
                encode_record(vm, record, &mut again).expect("a decoded record crosses again");
            }
            let back = decode_records(vm, &again.bytes).expect("what was encoded decodes");
            assert_eq!(back.len(), records.len());
            for (a, b) in back.iter().zip(&records) {
                // NaN is the one value not equal to itself.
                let same = vm.bool_eq(a, b).unwrap_or(false) || a.repr(vm).ok().map(|r| r.to_string()) == b.repr(vm).ok().map(|r| r.to_string());
                assert!(same);
            }
        })
    });
}
