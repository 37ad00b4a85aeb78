//! The module's INFO sections through the raw API (one info function per module, replacing the
//! empty one `redis_module!` registers). What goes in them is decided by `commands::info`.

use std::ffi::CString;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use redis_module::{Context, raw};

pub enum Value {
    Int(i64),
    Text(String),
    /// `name:key=value,key=value`.
    Dict(Vec<(String, String)>),
}

/// One section: Redis shows it as `rg_<name>` (`rg` alone for the default one, named ""), and
/// each field as `rg_<field>`.
pub struct Section {
    pub name: &'static str,
    pub fields: Vec<(String, Value)>,
}

pub type Sections = fn() -> Vec<Section>;

static SECTIONS: OnceLock<Sections> = OnceLock::new();

pub fn add_sections(ctx: &Context, sections: Sections) {
    let _ = SECTIONS.set(sections);
    // SAFETY: called from the module's init with its context; the callback is a plain extern fn
    // that lives as long as the module.
    unsafe {
        if let Some(register) = raw::RedisModule_RegisterInfoFunc {
            register(ctx.ctx, Some(info));
        }
    }
}

/// Field names and values as C strings (INFO is line-based: line breaks become spaces).
fn c(text: &str) -> CString {
    CString::new(text.replace(['\r', '\n', '\0'], " ")).unwrap_or_default()
}

/// SAFETY (callback contract): Redis calls it with the lock held and an INFO context valid for
/// the call; it is panic-contained.
extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: i32) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Some(sections) = SECTIONS.get() else { return };
        // SAFETY: reading the API table resolved at load; nothing writes it afterwards.
        let api = unsafe {
            (
                raw::RedisModule_InfoAddSection,
                raw::RedisModule_InfoAddFieldLongLong,
                raw::RedisModule_InfoAddFieldCString,
                raw::RedisModule_InfoBeginDictField,
                raw::RedisModule_InfoEndDictField,
            )
        };
        let (Some(section), Some(int), Some(text), Some(begin), Some(end)) = api else { return };
        for s in sections() {
            let name = c(s.name);
            // SAFETY: `ctx` is the info context Redis passes to this callback; every string is
            // NUL-terminated, lives across the call that uses it, and Redis copies it.
            unsafe {
                section(ctx, name.as_ptr() as *mut _);
                for (field, value) in s.fields {
                    let field = c(&field);
                    match value {
                        Value::Int(n) => {
                            int(ctx, field.as_ptr() as *mut _, n);
                        }
                        Value::Text(t) => {
                            let t = c(&t);
                            text(ctx, field.as_ptr() as *mut _, t.as_ptr() as *mut _);
                        }
                        Value::Dict(pairs) => {
                            begin(ctx, field.as_ptr() as *mut _);
                            for (k, v) in pairs {
                                let (k, v) = (c(&k), c(&v));
                                text(ctx, k.as_ptr() as *mut _, v.as_ptr() as *mut _);
                            }
                            end(ctx);
                        }
                    }
                }
            }
        }
    }));
}
