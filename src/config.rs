//! Typed configuration: load arguments (`name value` pairs), with RedisGears' names and defaults.
//! Built-in names match case-insensitively; anything else lands in the extra configuration,
//! which scripts read with `configGet`.

use std::sync::RwLock;

use crate::error::ConfigError;
use crate::unpoisoned::UnpoisonedRw;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub max_executions: i64,
    pub max_executions_per_registration: i64,
    pub profile_executions: i64,
    pub execution_threads: usize,
    pub execution_max_idle_time: i64,
    pub send_msg_retries: i64,
    /// Ours: wall-time limit of one execution in ms (0 = none).
    pub execution_time_limit: i64,
    /// Ours: bytes the Python interpreters may hold together (0 = no limit).
    pub python_memory_limit: i64,
    /// Ours: events an async registration may have waiting for its worker; more run inside the
    /// command that caused them (docs/python-api.md#registrations).
    pub max_pending_events_per_registration: i64,
    pub plugins: Vec<String>,
    pub python_attempt_traceback: i64,
    pub python_install_req_max_idle_time: i64,
    /// Unknown names and the Python settings, in the order they were given.
    pub extra: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_executions: 1000,
            max_executions_per_registration: 100,
            profile_executions: 0,
            execution_threads: 3,
            execution_max_idle_time: 5000,
            send_msg_retries: 3,
            execution_time_limit: 0,
            python_memory_limit: 1 << 30,
            max_pending_events_per_registration: 10_000,
            plugins: Vec::new(),
            python_attempt_traceback: 1,
            python_install_req_max_idle_time: 30000,
            extra: Vec::new(),
        }
    }
}

impl Config {
    pub fn from_load_args(args: &[Vec<u8>]) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut pairs = args.iter().map(|a| String::from_utf8_lossy(a).into_owned());
        while let Some(name) = pairs.next() {
            let value = pairs.next().ok_or_else(|| ConfigError::MissingValue(name.clone()))?;
            config.set_load_arg(&name, &value)?;
        }
        Ok(config)
    }

    fn set_load_arg(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let invalid = |why| ConfigError::InvalidValue { name: name.to_owned(), value: value.to_owned(), why };
        match Builtin::find(name) {
            Some(Builtin::Plugin) => self.plugins.push(value.to_owned()),
            Some(builtin) => self.set_builtin(builtin, value).map_err(invalid)?,
            None => {
                if let Some(setting) = PythonSetting::find(name) {
                    self.set_python(setting, value).map_err(invalid)?;
                }
                self.set_extra(name, value);
            }
        }
        Ok(())
    }

    fn set_builtin(&mut self, builtin: Builtin, value: &str) -> Result<(), &'static str> {
        let n = parse_int(value)?;
        let check = |ok: bool, why| if ok { Ok(n) } else { Err(why) };
        match builtin {
            Builtin::MaxExecutions => self.max_executions = n,
            Builtin::MaxExecutionsPerRegistration => self.max_executions_per_registration = n,
            Builtin::ProfileExecutions => self.profile_executions = n,
            Builtin::ExecutionThreads => {
                self.execution_threads = check(n > 0 && n <= 64, "must be between 1 and 64")? as usize
            }
            Builtin::ExecutionMaxIdleTime => self.execution_max_idle_time = check(n > 0, "must be > 0")?,
            Builtin::SendMsgRetries => self.send_msg_retries = check(n >= 0, "must be >= 0")?,
            Builtin::ExecutionTimeLimit => self.execution_time_limit = check(n >= 0, "must be >= 0")?,
            Builtin::PythonMemoryLimit => self.python_memory_limit = check(n >= 0, "must be >= 0")?,
            Builtin::MaxPendingEventsPerRegistration => {
                self.max_pending_events_per_registration = check(n > 0, "must be > 0")?
            }
            Builtin::Plugin => return Err("not a number"),
        }
        Ok(())
    }

    fn set_python(&mut self, setting: PythonSetting, value: &str) -> Result<(), &'static str> {
        match setting {
            PythonSetting::AttemptTraceback => self.python_attempt_traceback = parse_int(value)?,
            PythonSetting::InstallReqMaxIdleTime => {
                let n = parse_int(value)?;
                if n <= 0 {
                    return Err("must be > 0");
                }
                self.python_install_req_max_idle_time = n;
            }
            PythonSetting::Inert { numeric: true, .. } => {
                parse_int(value)?;
            }
            PythonSetting::Inert { .. } => {}
        }
        Ok(())
    }

    /// RG.CONFIGGET's element for one name (docs/commands.md#rgconfigget-rgconfigset).
    pub fn get_element(&self, name: &str) -> ConfigValue {
        if let Some(builtin) = Builtin::find_exact(name) {
            return match builtin {
                Builtin::MaxExecutions => ConfigValue::Int(self.max_executions),
                Builtin::MaxExecutionsPerRegistration => ConfigValue::Int(self.max_executions_per_registration),
                Builtin::ProfileExecutions => ConfigValue::Int(self.profile_executions),
                Builtin::ExecutionThreads => ConfigValue::Int(self.execution_threads as i64),
                Builtin::ExecutionMaxIdleTime => ConfigValue::Int(self.execution_max_idle_time),
                Builtin::SendMsgRetries => ConfigValue::Int(self.send_msg_retries),
                Builtin::ExecutionTimeLimit => ConfigValue::Int(self.execution_time_limit),
                Builtin::PythonMemoryLimit => ConfigValue::Int(self.python_memory_limit),
                Builtin::MaxPendingEventsPerRegistration => ConfigValue::Int(self.max_pending_events_per_registration),
                Builtin::Plugin => ConfigValue::List(self.plugins.clone()),
            };
        }
        if let Some(setting) = PythonSetting::find(name) {
            return match setting {
                PythonSetting::AttemptTraceback => ConfigValue::Int(self.python_attempt_traceback),
                PythonSetting::InstallReqMaxIdleTime => ConfigValue::Int(self.python_install_req_max_idle_time),
                PythonSetting::Inert { numeric: true, default, .. } => {
                    ConfigValue::Int(self.extra(name).unwrap_or(default).trim().parse().unwrap_or(0))
                }
                PythonSetting::Inert { default, .. } => {
                    ConfigValue::Str(self.extra(name).unwrap_or(default).to_owned())
                }
            };
        }
        match self.extra(name) {
            Some(v) => ConfigValue::Str(v.to_owned()),
            None => ConfigValue::Unsupported,
        }
    }

    /// RG.CONFIGSET of one pair (docs/commands.md#rgconfigget-rgconfigset).
    pub fn set_at_runtime(&mut self, name: &str, value: &str) -> SetOutcome {
        if let Some(builtin) = Builtin::find(name) {
            if matches!(builtin, Builtin::ExecutionThreads | Builtin::Plugin) {
                return SetOutcome::NotModifiable;
            }
            return match self.set_builtin(builtin, value) {
                Ok(()) => SetOutcome::Ok,
                Err(_) => SetOutcome::Failed,
            };
        }
        if let Some(setting) = PythonSetting::find(name) {
            if matches!(setting, PythonSetting::Inert { .. }) {
                return SetOutcome::PythonNotConfigurable;
            }
            if self.set_python(setting, value).is_err() {
                return SetOutcome::PythonFailed;
            }
        }
        self.set_extra(name, value);
        SetOutcome::SavedInExtra
    }

    fn set_extra(&mut self, name: &str, value: &str) {
        match self.extra.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value.to_owned(),
            None => self.extra.push((name.to_owned(), value.to_owned())),
        }
    }

    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn parse_int(value: &str) -> Result<i64, &'static str> {
    value.trim().parse::<i64>().map_err(|_| "not an integer")
}

/// The built-in settings: matched case-insensitively at load and by RG.CONFIGSET, exactly by
/// RG.CONFIGGET (RedisGears' own inconsistency, kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Builtin {
    MaxExecutions,
    MaxExecutionsPerRegistration,
    ProfileExecutions,
    ExecutionThreads,
    ExecutionMaxIdleTime,
    SendMsgRetries,
    ExecutionTimeLimit,
    PythonMemoryLimit,
    MaxPendingEventsPerRegistration,
    Plugin,
}

const BUILTINS: &[(&str, Builtin)] = &[
    ("MaxExecutions", Builtin::MaxExecutions),
    ("MaxExecutionsPerRegistration", Builtin::MaxExecutionsPerRegistration),
    ("ProfileExecutions", Builtin::ProfileExecutions),
    ("ExecutionThreads", Builtin::ExecutionThreads),
    ("ExecutionMaxIdleTime", Builtin::ExecutionMaxIdleTime),
    ("SendMsgRetries", Builtin::SendMsgRetries),
    ("ExecutionTimeLimit", Builtin::ExecutionTimeLimit),
    ("PythonMemoryLimit", Builtin::PythonMemoryLimit),
    ("MaxPendingEventsPerRegistration", Builtin::MaxPendingEventsPerRegistration),
    ("Plugin", Builtin::Plugin),
];

impl Builtin {
    fn find(name: &str) -> Option<Builtin> {
        BUILTINS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, b)| *b)
    }

    fn find_exact(name: &str) -> Option<Builtin> {
        BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
    }
}

/// The Python settings: matched exactly; stored in the extra configuration as well as applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PythonSetting {
    AttemptTraceback,
    InstallReqMaxIdleTime,
    /// Accepted for compatibility, no effect, not settable at runtime.
    Inert {
        numeric: bool,
        default: &'static str,
    },
}

const PYTHON_SETTINGS: &[(&str, PythonSetting)] = &[
    ("PythonAttemptTraceback", PythonSetting::AttemptTraceback),
    ("PythonInstallReqMaxIdleTime", PythonSetting::InstallReqMaxIdleTime),
    ("CreateVenv", PythonSetting::Inert { numeric: true, default: "0" }),
    ("DownloadDeps", PythonSetting::Inert { numeric: true, default: "0" }),
    ("ForeceDownloadDepsOnEnterprise", PythonSetting::Inert { numeric: true, default: "0" }),
    ("OverridePythonAllocators", PythonSetting::Inert { numeric: true, default: "1" }),
    ("DependenciesUrl", PythonSetting::Inert { numeric: false, default: "" }),
    ("DependenciesSha256", PythonSetting::Inert { numeric: false, default: "" }),
    ("PythonInstallationDir", PythonSetting::Inert { numeric: false, default: "/var/opt/redislabs/modules/rg" }),
];

impl PythonSetting {
    fn find(name: &str) -> Option<PythonSetting> {
        PYTHON_SETTINGS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    Int(i64),
    Str(String),
    List(Vec<String>),
    Unsupported,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Ok,
    NotModifiable,
    Failed,
    PythonNotConfigurable,
    PythonFailed,
    SavedInExtra,
}

static CONFIG: RwLock<Option<Config>> = RwLock::new(None);

pub fn adopt(config: Config) {
    crate::memory::set_limit(config.python_memory_limit);
    *CONFIG.write_locked() = Some(config);
}

/// A copy of the current configuration (the defaults before the module is loaded).
pub fn get() -> Config {
    CONFIG.read_locked().clone().unwrap_or_default()
}

pub fn update<R>(f: impl FnOnce(&mut Config) -> R) -> R {
    let mut guard = CONFIG.write_locked();
    let config = guard.get_or_insert_with(Config::default);
    let r = f(config);
    crate::memory::set_limit(config.python_memory_limit);
    r
}

/// Reads one value without copying the whole configuration.
pub fn with<R>(f: impl FnOnce(&Config) -> R) -> R {
    let guard = CONFIG.read_locked();
    match guard.as_ref() {
        Some(config) => f(config),
        None => f(&Config::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn defaults_and_case_insensitive_builtins() {
        let c = Config::from_load_args(&args(&["executionTHREADS", "2", "MaxExecutions", "7"])).unwrap();
        assert_eq!(c.execution_threads, 2);
        assert_eq!(c.max_executions, 7);
        assert_eq!(c.max_executions_per_registration, 100);
    }

    #[test]
    fn unknown_names_go_to_extra_and_plugin_is_remembered() {
        let c = Config::from_load_args(&args(&["MyKey", "MyValue", "Plugin", "/x/gears.so"])).unwrap();
        assert_eq!(c.extra("MyKey"), Some("MyValue"));
        assert_eq!(c.extra("mykey"), None);
        assert_eq!(c.plugins, vec!["/x/gears.so".to_owned()]);
    }

    #[test]
    fn runtime_get_and_set_follow_redisgears_rules() {
        let mut c = Config::from_load_args(&args(&["PythonAttemptTraceback", "0"])).unwrap();
        assert_eq!(c.get_element("MaxExecutions"), ConfigValue::Int(1000));
        assert_eq!(c.get_element("maxexecutions"), ConfigValue::Unsupported);
        assert_eq!(c.get_element("PythonAttemptTraceback"), ConfigValue::Int(0));
        assert_eq!(c.get_element("CreateVenv"), ConfigValue::Int(0));
        assert_eq!(c.set_at_runtime("maxEXECUTIONS", "5"), SetOutcome::Ok);
        assert_eq!(c.max_executions, 5);
        assert_eq!(c.set_at_runtime("ExecutionThreads", "5"), SetOutcome::NotModifiable);
        assert_eq!(c.set_at_runtime("MaxExecutions", "x"), SetOutcome::Failed);
        assert_eq!(c.set_at_runtime("CreateVenv", "1"), SetOutcome::PythonNotConfigurable);
        assert_eq!(c.set_at_runtime("PythonAttemptTraceback", "x"), SetOutcome::PythonFailed);
        assert_eq!(c.set_at_runtime("PythonAttemptTraceback", "1"), SetOutcome::SavedInExtra);
        assert_eq!(c.python_attempt_traceback, 1);
        assert_eq!(c.set_at_runtime("pythonattempttraceback", "7"), SetOutcome::SavedInExtra);
        assert_eq!(c.python_attempt_traceback, 1);
        assert_eq!(c.get_element("pythonattempttraceback"), ConfigValue::Str("7".into()));
    }

    #[test]
    fn bad_values_fail() {
        assert!(Config::from_load_args(&args(&["ExecutionThreads", "0"])).is_err());
        assert!(Config::from_load_args(&args(&["ExecutionThreads", "x"])).is_err());
        assert!(Config::from_load_args(&args(&["MaxExecutions"])).is_err());
    }
}
