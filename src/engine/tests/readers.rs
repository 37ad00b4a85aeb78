//! The readers' records.

use super::*;

// ----- readers ----------------------------------------------------------------------------

#[test]
fn keys_reader_records() {
    let store = MemoryStore::new([
        ("s", string("v")),
        ("h", KeyValue::Hash(vec![(bytes("f"), bytes("1"))])),
        ("l", KeyValue::List(vec![bytes("a"), bytes("b")])),
        ("z", KeyValue::ZSet),
    ]);
    let ran = run(store, "GB().map(lambda r: [r['key'], r['type'], r['value']]).run()");
    assert_eq!(
        ran.results(),
        strings(&[
            "['h', 'hash', {'f': '1'}]",
            "['l', 'list', ['a', 'b']]",
            "['s', 'string', 'v']",
            "['z', 'zset', None]"
        ])
    );
    let ran = run(numbered(3), "GB().run('k[12]', readValue=False)");
    assert_eq!(ran.results(), strings(&["{'key': 'k1', 'event': None}", "{'key': 'k2', 'event': None}"]));
    let ran = run(MemoryStore::default(), "GB().run('missing', noScan=True)");
    assert_eq!(ran.results(), strings(&["{'key': 'missing', 'value': None, 'type': 'empty', 'event': None}"]));
}

#[test]
fn keys_reader_reads_page_by_page() {
    let ran = run(numbered(25).with_page(4), "GB().count().run()");
    assert_eq!(ran.results(), strings(&["25"]));
    let ran = run(numbered(25).with_page(4), "GB().map(lambda r: r['value']).count().run()");
    assert_eq!(ran.results(), strings(&["25"]));
    assert_eq!(ran.store.pages_read(), 7);
}

#[test]
fn keys_only_reader_scans_with_execute() {
    let ran = run(numbered(12), "GB('KeysOnlyReader').run('k1*', count=3)");
    assert_eq!(ran.results(), strings(&["k1", "k10", "k11"]));
    let ran = run(numbered(2), "GB('KeysOnlyReader').run('k1', noScan=True)");
    assert_eq!(ran.results(), strings(&["k1"]));
    assert_eq!(run(numbered(2), "GB('KeysOnlyReader').run('k7', noScan=True)").results(), Vec::<String>::new());
}

#[test]
fn python_and_shards_id_readers() {
    assert_eq!(run(MemoryStore::default(), "GB('ShardsIDReader').run()").results(), strings(&["1"]));
    assert_eq!(run(MemoryStore::default(), "GB('PythonReader').run(lambda: 'one')").results(), strings(&["one"]));
    let failing = run(MemoryStore::default(), "GB('PythonReader').run(lambda: flat_error('no records'))");
    assert_eq!((failing.results(), failing.errors()), (vec![], strings(&["no records"])));
}

#[test]
fn stream_reader_needs_xread() {
    let ran = run(MemoryStore::default(), "GB('StreamReader').run('s')");
    assert_eq!((ran.results(), ran.errors()), (vec![], strings(&["ERR unknown command 'XREAD'"])));
}
