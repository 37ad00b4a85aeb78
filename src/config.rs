//! Typed configuration: load arguments (`name value` pairs), with RedisGears' names and defaults.
//! Built-in names match case-insensitively; anything else lands in the extra configuration,
//! which scripts read with `configGet`.

use std::sync::{PoisonError, RwLock};

use crate::error::ConfigError;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub max_executions: i64,
    pub max_executions_per_registration: i64,
    pub profile_executions: i64,
    pub execution_threads: usize,
    pub execution_max_idle_time: i64,
    pub send_msg_retries: i64,
    pub plugins: Vec<String>,
    pub python_attempt_traceback: bool,
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
            plugins: Vec::new(),
            python_attempt_traceback: true,
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
        let int = || value.trim().parse::<i64>().map_err(|_| invalid("not an integer"));
        match name.to_ascii_lowercase().as_str() {
            "maxexecutions" => self.max_executions = int()?,
            "maxexecutionsperregistration" => self.max_executions_per_registration = int()?,
            "profileexecutions" => self.profile_executions = int()?,
            "executionthreads" => {
                let n = int()?;
                if n <= 0 || n > 64 {
                    return Err(invalid("must be between 1 and 64"));
                }
                self.execution_threads = n as usize;
            }
            "executionmaxidletime" => {
                let n = int()?;
                if n <= 0 {
                    return Err(invalid("must be > 0"));
                }
                self.execution_max_idle_time = n;
            }
            "sendmsgretries" => {
                let n = int()?;
                if n < 0 {
                    return Err(invalid("must be >= 0"));
                }
                self.send_msg_retries = n;
            }
            "plugin" => self.plugins.push(value.to_owned()),
            _ => {
                if name == "PythonAttemptTraceback" {
                    self.python_attempt_traceback = int()? != 0;
                }
                self.set_extra(name, value);
            }
        }
        Ok(())
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

static CONFIG: RwLock<Option<Config>> = RwLock::new(None);

pub fn install(config: Config) {
    *CONFIG.write().unwrap_or_else(PoisonError::into_inner) = Some(config);
}

/// A copy of the current configuration (the defaults before the module is loaded).
pub fn get() -> Config {
    CONFIG.read().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or_default()
}

/// Reads one value without copying the whole configuration.
pub fn with<R>(f: impl FnOnce(&Config) -> R) -> R {
    let guard = CONFIG.read().unwrap_or_else(PoisonError::into_inner);
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
    fn bad_values_fail() {
        assert!(Config::from_load_args(&args(&["ExecutionThreads", "0"])).is_err());
        assert!(Config::from_load_args(&args(&["ExecutionThreads", "x"])).is_err());
        assert!(Config::from_load_args(&args(&["MaxExecutions"])).is_err());
    }
}
