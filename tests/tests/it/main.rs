//! The one integration-test binary: a module per area, sharing the harness in `uwsgi_tests`
//! (`tests/src/`). Every test starts the real binaries in a temporary directory on loopback.

mod bad_input_ctl;
mod bad_input_http;
mod bad_input_options;
mod chan;
mod exec_support;
mod harness;
mod security_ctl;
mod security_fifo;
mod security_runtime;
mod tidy;
mod uwsgictl_generated;
mod uwsgictl_uwsgi;
mod uwsgictl_uwsgid;
mod uwsgictl_validation;
mod uwsgid_chain;
mod uwsgid_exec_examples;
mod uwsgid_exec_log;
mod uwsgid_exec_preload;
mod uwsgid_exec_protocol;
mod uwsgid_exec_wsgi;
mod uwsgid_fifo;
mod uwsgid_generated;
mod uwsgid_lifecycle;
mod uwsgid_limits;
mod uwsgid_python;
mod uwsgid_reload;
mod uwsgid_serving;
mod uwsgid_signals;
mod uwsgid_stats;
mod uwsgid_touch;
mod uwsgid_vacuum;
