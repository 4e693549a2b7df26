//! `code_run`: Python, JavaScript and TypeScript run as real programs with real argv, through
//! the process capability (timeouts and tree kill included). Python runs under our embedded
//! bootstrap, which captures every matplotlib figure and sends it on a private pipe (never
//! through the program's output, so output cannot forge a chart).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::process::{ExecOutcome, Process, Program, Stream};

/// The bootstrap: runs a file as `__main__` with charts on `TOOLBOXD_CHART_FD`.
const RUNNER: &str = include_str!("python/toolboxd_run.py");
/// The matplotlib hook the bootstrap (and the interpreter worker) imports.
const CHARTS: &str = include_str!("python/toolboxd_charts.py");
/// The interpreter's Python worker.
const PYTHON_WORKER: &str = include_str!("python/toolboxd_worker.py");
/// The interpreter's Node worker.
const NODE_WORKER: &str = include_str!("node/toolboxd_worker.js");
/// The preload of JavaScript and TypeScript code runs: Daytona's argv, the user's frames only.
const NODE_RUNNER: &str = include_str!("node/toolboxd_run.js");
/// The plain runner (no chart capture), for code that cannot plot: imported from the support
/// directory, so Python caches its bytecode there (see the file).
const PLAIN_RUNNER: &str = include_str!("python/toolboxd_plain.py");
/// What `python3 -u -c` runs to import it: the support directory is `argv[1]`.
const PLAIN_BOOTSTRAP: &str =
    "import sys;sys.dont_write_bytecode=0;sys.path.insert(0,sys.argv[1]);import toolboxd_plain";

/// Everything written to the support directory.
const SUPPORT_FILES: [(&str, &str); 6] = [
    ("toolboxd_run.py", RUNNER),
    ("toolboxd_plain.py", PLAIN_RUNNER),
    ("toolboxd_charts.py", CHARTS),
    ("toolboxd_worker.py", PYTHON_WORKER),
    ("toolboxd_worker.js", NODE_WORKER),
    ("toolboxd_run.js", NODE_RUNNER),
];

/// A language code-run knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// CPython 3 (`python3`, else `python`).
    Python,
    /// Node.js.
    JavaScript,
    /// TypeScript: `tsx`, else Node's type stripping, else `ts-node`.
    TypeScript,
}

impl Language {
    /// Parses a language name (empty is python, as the SDKs default).
    pub fn parse(name: &str) -> Result<Language> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "python" | "python3" | "py" => Ok(Language::Python),
            "javascript" | "js" | "node" => Ok(Language::JavaScript),
            "typescript" | "ts" => Ok(Language::TypeScript),
            other => Err(Error::bad_request(format!(
                "unsupported language: {other} (use python, javascript or typescript)"
            ))),
        }
    }
}

/// `POST /process/code-run`.
#[derive(Debug, Clone, Default)]
pub struct CodeRunRequest {
    /// The program text.
    pub code: String,
    /// Arguments, each one argument.
    pub argv: Vec<String>,
    /// Extra environment.
    pub envs: BTreeMap<String, String>,
    /// Working directory, relative to the work dir; the work dir when `None` (modules are
    /// resolved from it).
    pub cwd: Option<String>,
    /// Kill the tree and answer 408 after this long.
    pub timeout: Option<Duration>,
    /// Kill the tree and fail with `Cancelled` once cancelled (see `ExecRequest::cancel`).
    pub cancel: Option<tokio_util::sync::CancellationToken>,
}

/// How it went: the program's outcome and the charts its side channel carried.
#[derive(Debug, Clone, Default)]
pub struct CodeRunOutcome {
    /// Exit code and output (`side` holds the raw chart records).
    pub exec: ExecOutcome,
    /// Every chart, in the order shown.
    pub charts: Vec<Value>,
}

/// The code capability.
#[derive(Debug, Clone)]
pub struct Code {
    process: Process,
    /// Our Python files, written once per daemon into a private directory.
    support: Arc<Mutex<Option<tempfile::TempDir>>>,
    /// The node version, looked up once (`None` inside: no node).
    node_version: Arc<tokio::sync::OnceCell<Option<(u32, u32)>>>,
}

impl Code {
    /// The capability, spawning through `process`.
    pub fn new(process: Process) -> Code {
        Code {
            process,
            support: Arc::default(),
            node_version: Arc::default(),
        }
    }

    /// The directory holding `toolboxd_run.py` and `toolboxd_charts.py` (also used by the
    /// interpreter's Python worker).
    pub fn support_dir(&self) -> Result<PathBuf> {
        let mut support = self.support.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = support
            .as_ref()
            // Both runners still there (a /tmp cleaner may have removed them).
            .filter(|d| {
                d.path().join("toolboxd_run.py").is_file()
                    && d.path().join("toolboxd_plain.py").is_file()
            })
        {
            return Ok(dir.path().to_path_buf());
        }
        let dir = tempfile::Builder::new()
            .prefix("toolboxd-code-")
            .tempdir()
            .map_err(|err| {
                Error::internal(format!("cannot create a directory for code runs: {err}"))
            })?;
        for (name, text) in SUPPORT_FILES {
            std::fs::write(dir.path().join(name), text)
                .map_err(|err| Error::io("write", &dir.path().join(name), &err))?;
        }
        let path = dir.path().to_path_buf();
        *support = Some(dir);
        Ok(path)
    }

    /// Runs `code` as a program of `language`.
    pub async fn run(&self, language: Language, request: CodeRunRequest) -> Result<CodeRunOutcome> {
        if request.code.trim().is_empty() {
            return Err(Error::bad_request("code cannot be empty"));
        }
        let scratch = tempfile::Builder::new()
            .prefix("toolboxd-run-")
            .tempdir()
            .map_err(|err| Error::internal(format!("cannot create a scratch directory: {err}")))?;
        let mut program = match language {
            Language::Python => self.python(scratch.path(), &request.code)?,
            Language::JavaScript => {
                let file = write(scratch.path(), "code.js", &request.code)?;
                let node = self
                    .find("node")
                    .ok_or_else(|| missing("javascript", "node"))?;
                program(node, vec![self.node_preload()?, file.into()])
            }
            Language::TypeScript => self.typescript(scratch.path(), &request.code).await?,
        };
        program.args.extend(request.argv.iter().map(OsString::from));
        program.envs = request.envs;
        program.cwd = request.cwd;
        program.timeout = request.timeout;
        program.cancel = request.cancel;
        let exec = self.process.run(program).await?;
        drop(scratch);
        Ok(CodeRunOutcome {
            charts: parse_charts(&exec.side),
            exec,
        })
    }

    fn python(&self, scratch: &Path, code: &str) -> Result<Program> {
        let python = self
            .find("python3")
            .or_else(|| self.find("python"))
            .ok_or_else(|| missing("python", "python3"))?;
        let file = write(scratch, "code.py", code)?;
        if !may_plot(code) {
            // Nothing that could draw a figure: run the file as plain Python, at plain Python's
            // speed (the chart bootstrap costs ~20 ms of imports).
            return Ok(program(
                python,
                vec![
                    "-u".into(),
                    "-c".into(),
                    PLAIN_BOOTSTRAP.into(),
                    self.support_dir()?.into(),
                    file.into(),
                ],
            ));
        }
        let runner = self.support_dir()?.join("toolboxd_run.py");
        let mut program = program(python, vec!["-u".into(), runner.into(), file.into()]);
        program.side_channel = true;
        Ok(program)
    }

    /// `--require=<toolboxd_run.js>`: the preload that gives a JavaScript or TypeScript program
    /// Daytona's `process.argv`, resolves its modules from the working directory (the code is
    /// compiled as `<cwd>/[code].js`, a name no file has) and trims its stack traces to the
    /// user's frames, without a line added to the user's file.
    fn node_preload(&self) -> Result<OsString> {
        let mut arg = OsString::from("--require=");
        arg.push(self.support_dir()?.join("toolboxd_run.js"));
        Ok(arg)
    }

    async fn typescript(&self, scratch: &Path, code: &str) -> Result<Program> {
        let file = write(scratch, "code.ts", code)?;
        let preload = self.node_preload()?;
        if let Some(tsx) = self.find("tsx") {
            return Ok(program(tsx, vec![preload, file.into()]));
        }
        let node = self.find("node");
        if let Some(node) = &node {
            match self.node_version(node).await {
                // Type stripping is on by default from 23.6, behind a flag from 22.6.
                Some(v) if v >= (23, 6) => {
                    return Ok(program(
                        node.clone(),
                        vec![
                            "--disable-warning=ExperimentalWarning".into(),
                            preload,
                            file.into(),
                        ],
                    ))
                }
                Some(v) if v >= (22, 6) => {
                    return Ok(program(
                        node.clone(),
                        vec![
                            "--experimental-strip-types".into(),
                            "--disable-warning=ExperimentalWarning".into(),
                            preload,
                            file.into(),
                        ],
                    ))
                }
                _ => {}
            }
        }
        if let Some(ts_node) = self.find("ts-node") {
            return Ok(program(
                ts_node,
                vec![
                    "-T".into(),
                    "-O".into(),
                    r#"{"module":"CommonJS"}"#.into(),
                    "-r".into(),
                    self.support_dir()?.join("toolboxd_run.js").into(),
                    file.into(),
                ],
            ));
        }
        Err(Error::bad_request(format!(
            "typescript needs tsx or ts-node on PATH, or Node.js 22.6 or newer (found {}): \
             install one, e.g. `npm install -g tsx`",
            match &node {
                Some(node) => match self.node_version(node).await {
                    Some((major, minor)) => format!("node {major}.{minor}"),
                    None => "a node whose version could not be read".to_string(),
                },
                None => "no node".to_string(),
            }
        )))
    }

    /// `major.minor` of `node --version`, asked once.
    async fn node_version(&self, node: &Path) -> Option<(u32, u32)> {
        let node = node.to_path_buf();
        let process = self.process.clone();
        *self
            .node_version
            .get_or_init(|| async move {
                let outcome = process
                    .run(program(node, vec!["--version".into()]))
                    .await
                    .ok()?;
                let stdout = outcome.output.to_vec(Stream::Stdout);
                let text = String::from_utf8_lossy(&stdout);
                let mut parts = text.trim().trim_start_matches('v').split('.');
                Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
            })
            .await
    }

    /// The program and arguments of an interpreter worker for `language` (python or
    /// javascript).
    pub fn worker_command(&self, language: Language) -> Result<(PathBuf, Vec<OsString>)> {
        let support = self.support_dir()?;
        match language {
            Language::Python => {
                let python = self
                    .find("python3")
                    .or_else(|| self.find("python"))
                    .ok_or_else(|| missing("python", "python3"))?;
                Ok((python, vec![support.join("toolboxd_worker.py").into()]))
            }
            Language::JavaScript => {
                let node = self
                    .find("node")
                    .ok_or_else(|| missing("javascript", "node"))?;
                Ok((node, vec![support.join("toolboxd_worker.js").into()]))
            }
            Language::TypeScript => Err(Error::bad_request(
                "interpreter contexts support python and javascript",
            )),
        }
    }

    /// `name` on the PATH children get.
    fn find(&self, name: &str) -> Option<PathBuf> {
        let path = self.process.env_snapshot().get("PATH").cloned()?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    }
}

fn program(program: PathBuf, args: Vec<OsString>) -> Program {
    Program {
        program,
        args,
        ..Program::default()
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn missing(language: &str, program: &str) -> Error {
    Error::bad_request(format!(
        "{language} is not available: `{program}` is not on PATH in this sandbox"
    ))
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|err| Error::io("write", &path, &err))?;
    Ok(path)
}

/// Whether Python `code` may draw a matplotlib figure: it names matplotlib or a library that
/// plots through it (Daytona hooks only code that imports matplotlib itself; this also covers
/// `df.plot()` and seaborn). Code that names none of them cannot reach pyplot except through
/// indirection such as `__import__(name)`, and then runs without chart capture.
fn may_plot(code: &str) -> bool {
    const NAMES: [&str; 9] = [
        "matplotlib",
        "pyplot",
        "pylab",
        "seaborn",
        "pandas",
        "plotnine",
        "networkx",
        "sklearn",
        ".plot",
    ];
    NAMES.iter().any(|name| code.contains(name))
}

/// The charts among the side channel's JSON lines (`{"type":"chart","value":{…}}`), as
/// [`wire_chart`] sends them.
pub fn parse_charts(side: &[u8]) -> Vec<Value> {
    side.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(|record| record["type"] == "chart")
        .filter_map(|mut record| wire_chart(record["value"].take()))
        .collect()
}

/// `chart` as it goes out (code-run artifacts, interpreter chart frames): without its missing
/// values, since Daytona omits the text a chart lacks (`title`, `x_label`, `y_label`, an
/// element's `group` or `autopct`, …) and every field of the SDKs' types is optional, never
/// nullable (TypeScript users test for `undefined`). `None` for a chart the SDKs' strict models
/// would reject: one bad chart would otherwise fail the whole response in the client (user code
/// can reach the channel from inside its own process).
pub fn wire_chart(mut chart: Value) -> Option<Value> {
    if !valid_chart(&chart) {
        tracing::warn!("dropped a chart the SDK models would reject");
        return None;
    }
    omit_nulls(&mut chart);
    Some(chart)
}

/// Removes the null members of a chart object, of its elements and of theirs.
fn omit_nulls(chart: &mut Value) {
    let Some(object) = chart.as_object_mut() else {
        return;
    };
    object.retain(|_, value| !value.is_null());
    if let Some(Value::Array(elements)) = object.get_mut("elements") {
        elements.iter_mut().for_each(omit_nulls);
    }
}

/// Whether `chart` (or a composite's sub-chart, or an element) fits the SDKs' models:
/// strings where they want strings, numbers where they want numbers, lists of objects.
fn valid_chart(chart: &Value) -> bool {
    const TEXT: [&str; 12] = [
        "type", "title", "png", "x_label", "y_label", "x_scale", "y_scale", "label", "group",
        "value", "autopct", "name",
    ];
    const NUMBER: [&str; 7] = [
        "angle",
        "radius",
        "min",
        "first_quartile",
        "median",
        "third_quartile",
        "max",
    ];
    const NUMBERS: [&str; 3] = ["x_ticks", "y_ticks", "outliers"];
    const TEXTS: [&str; 2] = ["x_tick_labels", "y_tick_labels"];
    let Some(object) = chart.as_object() else {
        return false;
    };
    let all = |value: Option<&Value>, each: fn(&Value) -> bool| match value {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.iter().all(each),
        Some(_) => false,
    };
    TEXT.iter().all(|key| {
        matches!(
            object.get(*key),
            None | Some(Value::Null | Value::String(_))
        )
    }) && NUMBER.iter().all(|key| {
        matches!(
            object.get(*key),
            None | Some(Value::Null | Value::Number(_))
        )
    }) && NUMBERS
        .iter()
        .all(|key| all(object.get(*key), Value::is_number))
        && TEXTS
            .iter()
            .all(|key| all(object.get(*key), Value::is_string))
        && all(object.get("points"), |point| {
            point
                .as_array()
                .is_some_and(|xy| xy.iter().all(Value::is_number))
        })
        && all(object.get("elements"), valid_chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_come_only_from_well_formed_records() {
        let side = b"{\"type\":\"chart\",\"value\":{\"type\":\"line\"}}\nnot json\n\
            {\"type\":\"other\",\"value\":{}}\n{\"type\":\"chart\",\"value\":3}\n\
            {\"type\":\"chart\",\"value\":{\"type\":\"bar\"}}";
        let charts = parse_charts(side);
        assert_eq!(charts.len(), 2);
        assert_eq!(charts[1]["type"], "bar");
    }

    #[test]
    fn charts_the_sdk_would_reject_are_dropped() {
        let good = serde_json::json!({"type": "composite_chart", "title": null, "elements": [
            {"type": "line", "x_ticks": [0, 1.5], "x_tick_labels": ["a", "b"],
             "elements": [{"label": "l", "points": [[0, 1], [2.5, 3]]}]},
            {"type": "bar", "elements": [{"label": "a", "group": "g", "value": "3"}]},
            {"type": "box_and_whisker", "elements": [{"min": 1, "max": null, "outliers": [9]}]},
        ]});
        assert!(valid_chart(&good));
        for bad in [
            serde_json::json!({"type": "bar", "elements": [{"value": 3}]}),
            serde_json::json!({"type": "line", "elements": [{"points": [[0, "2020-01-01"]]}]}),
            serde_json::json!({"type": "line", "x_ticks": ["2020-01-01"]}),
            serde_json::json!({"type": "line", "elements": [null]}),
            serde_json::json!({"type": "line", "title": 5}),
            serde_json::json!({"type": "pie", "elements": [{"angle": "90"}]}),
            serde_json::json!({"type": "composite_chart", "elements": [{"elements": [{"value": 1}]}]}),
        ] {
            assert!(!valid_chart(&bad), "{bad}");
        }
    }

    /// Found by `proptests::valid_charts_round_trip`: serde_json's default float parsing gave
    /// 109658457.90888505 for 109658457.90888503 (one unit in the last place).
    #[test]
    fn chart_numbers_go_out_as_they_came_in() {
        let side = br#"{"type":"chart","value":{"type":"line","elements":[{"points":[[109658457.90888503,0.1]]}]}}"#;
        let charts = parse_charts(side);
        assert_eq!(
            charts[0]["elements"][0]["points"][0].to_string(),
            "[109658457.90888503,0.1]"
        );
    }

    #[test]
    fn missing_values_are_omitted_not_null() {
        let chart = serde_json::json!({"type": "composite_chart", "title": null, "png": "p",
        "elements": [
            {"type": "bar", "title": "t", "x_label": null, "y_label": null, "elements": [
                {"label": "a", "group": null, "value": "3"}]},
            {"type": "pie", "elements": [{"label": null, "angle": 90.0, "autopct": null}]},
        ]});
        assert_eq!(
            wire_chart(chart),
            Some(
                serde_json::json!({"type": "composite_chart", "png": "p", "elements": [
                    {"type": "bar", "title": "t", "elements": [{"label": "a", "value": "3"}]},
                    {"type": "pie", "elements": [{"angle": 90.0}]},
                ]})
            )
        );
        assert_eq!(
            wire_chart(serde_json::json!({"type": "line", "elements": null})),
            Some(serde_json::json!({"type": "line"}))
        );
        assert_eq!(
            wire_chart(serde_json::json!({"type": "line", "title": 5})),
            None
        );
    }

    #[test]
    fn plotting_code_is_recognised() {
        assert!(may_plot("import matplotlib.pyplot as plt"));
        assert!(may_plot("import pandas as pd\ndf.plot()"));
        assert!(may_plot("from pylab import *"));
        assert!(!may_plot("print(1)"));
        assert!(!may_plot("import json, sys\nprint(sys.argv)"));
    }

    #[test]
    fn languages_parse() {
        assert_eq!(Language::parse("").unwrap(), Language::Python);
        assert_eq!(Language::parse("TypeScript").unwrap(), Language::TypeScript);
        assert!(Language::parse("ruby").is_err());
    }
}

/// Property tests of chart parsing (`PROPTEST_CASES` sets how many cases run; 256 by default).
#[cfg(test)]
mod proptests {
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use super::{parse_charts, valid_chart, wire_chart};

    /// Member names: the chart fields the SDKs know, and others.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("type"),
            Just("title"),
            Just("elements"),
            Just("points"),
            Just("label"),
            Just("value"),
            Just("x_ticks"),
            Just("x_tick_labels"),
            Just("angle"),
            Just("min"),
            Just("outliers"),
            Just("group"),
            Just("png"),
            Just("other"),
        ]
        .prop_map(str::to_string)
    }

    /// Any JSON value, shaped like charts often enough to reach every check.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// What a chart that went out must be: valid, without null members, and unchanged by a
    /// second pass.
    fn check_sent(chart: &Value) -> std::result::Result<(), TestCaseError> {
        prop_assert!(valid_chart(chart));
        prop_assert!(!has_null_member(chart), "{}", chart);
        let again = wire_chart(chart.clone());
        prop_assert_eq!(again.as_ref(), Some(chart));
        Ok(())
    }

    fn has_null_member(chart: &Value) -> bool {
        let Some(object) = chart.as_object() else {
            return false;
        };
        object.values().any(Value::is_null)
            || object
                .get("elements")
                .and_then(Value::as_array)
                .is_some_and(|elements| elements.iter().any(has_null_member))
    }

    fn text() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            "[ -~]{0,8}".prop_map(|s| Some(Value::String(s)))
        ]
    }

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i32>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from)
        ]
    }

    /// An element of a line, bar, pie or box chart: every field optional, some null.
    fn element() -> impl Strategy<Value = Value> {
        (
            text(),
            text(),
            prop::option::of(vec(vec(number(), 2), 0..4)),
            prop::option::of(number()),
            prop::option::of(vec(number(), 0..3)),
        )
            .prop_map(|(label, group, points, angle, outliers)| {
                let mut element = Map::new();
                element.extend(label.map(|v| ("label".to_string(), v)));
                element.extend(group.map(|v| ("group".to_string(), v)));
                element.extend(points.map(|p| ("points".to_string(), json!(p))));
                element.extend(angle.map(|v| ("angle".to_string(), v)));
                element.extend(outliers.map(|v| ("outliers".to_string(), json!(v))));
                Value::Object(element)
            })
    }

    /// A chart the SDKs' models take, possibly composite.
    fn valid() -> impl Strategy<Value = Value> {
        let simple = (
            prop_oneof![
                Just("line"),
                Just("bar"),
                Just("pie"),
                Just("box_and_whisker"),
                Just("scatter")
            ],
            text(),
            text(),
            prop::option::of(vec(number(), 0..4)),
            prop::option::of(vec("[a-z]{0,3}", 0..4)),
            prop::option::of(vec(element(), 0..4)),
        )
            .prop_map(|(kind, title, png, ticks, labels, elements)| {
                let mut chart = Map::new();
                chart.insert("type".to_string(), json!(kind));
                chart.extend(title.map(|v| ("title".to_string(), v)));
                chart.extend(png.map(|v| ("png".to_string(), v)));
                chart.extend(ticks.map(|v| ("x_ticks".to_string(), json!(v))));
                chart.extend(labels.map(|v| ("x_tick_labels".to_string(), json!(v))));
                chart.extend(elements.map(|v| ("elements".to_string(), Value::Array(v))));
                Value::Object(chart)
            })
            .boxed();
        prop_oneof![
            simple.clone(),
            (text(), vec(simple, 0..3)).prop_map(|(title, elements)| {
                let mut chart = Map::new();
                chart.insert("type".to_string(), json!("composite_chart"));
                chart.extend(title.map(|v| ("title".to_string(), v)));
                chart.insert("elements".to_string(), Value::Array(elements));
                Value::Object(chart)
            }),
        ]
    }

    /// `chart` without its null members (in it and down its elements).
    fn without_nulls(chart: &Value) -> Value {
        let mut chart = chart.clone();
        super::omit_nulls(&mut chart);
        chart
    }

    proptest! {
        /// Any bytes on the side channel: no panic, and only charts fit to send.
        #[test]
        fn any_side_channel_bytes_give_only_sendable_charts(side in vec(any::<u8>(), 0..300)) {
            for chart in parse_charts(&side) {
                check_sent(&chart)?;
            }
        }

        /// Any JSON as a chart: no panic; dropped, or sent fit.
        #[test]
        fn any_json_is_dropped_or_sent_fit(value in json_value()) {
            let record = json!({"type": "chart", "value": value.clone()}).to_string();
            for chart in parse_charts(record.as_bytes()) {
                check_sent(&chart)?;
            }
            if let Some(chart) = wire_chart(value) {
                check_sent(&chart)?;
            }
        }

        /// A valid chart, among other lines, comes back as it was, nulls left out.
        #[test]
        fn valid_charts_round_trip(chart in valid(), noise in vec("[ -~]{0,20}", 0..3)) {
            let mut side = String::new();
            for line in &noise {
                side.push_str(line);
                side.push('\n');
            }
            side.push_str(&json!({"type": "chart", "value": chart.clone()}).to_string());
            side.push('\n');
            let charts = parse_charts(side.as_bytes());
            let expected = without_nulls(&chart);
            prop_assert_eq!(charts.last(), Some(&expected));
            check_sent(&expected)?;
            let text = serde_json::to_string(&expected).unwrap();
            prop_assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        }
    }
}
