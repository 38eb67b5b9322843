//! CEL expressions in roles: argument conditions (`mcp.tool_rules[].where`) and Teleport's
//! `app_labels_expression`, compiled once per policy load and evaluated per call.
//!
//! Owns the CEL environment (the standard library plus Teleport's predicate functions
//! `contains`, `contains_any`, `contains_all`, `regexp.match`, `strings.lower`,
//! `strings.upper`), the variables an expression sees, and the three-way outcome of an
//! evaluation. Variables are built only when the expression names them: a condition that
//! reads only `args` never pays for `user` or `app`. Does no I/O.
//!
//! Variables: `args` (the call's `params.arguments`, parsed JSON; `{}` when absent), `user`
//! (`name`, `roles`, `traits`, and Teleport's `user.spec.roles` / `user.spec.traits`),
//! `app` (`name`, `labels`), `labels` (the app's labels, as Teleport's expressions name
//! them), `method`, `protocol_version` and `time` (`unix`, UTC `hour` and `weekday`,
//! Sunday = 0).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use cel::common::ast::{EntryExpr, Expr, MapExpr, StructExpr};
use cel::common::types::{self, CelBool};
use cel::common::value::CowVal;
use cel::{Context, Env, ExecutionError, IdedExpr, Program, Value};

use super::{App, User};

/// One compiled expression and the variables it reads.
#[derive(Debug)]
pub struct Condition {
    source: Box<str>,
    program: Program,
    uses: u8,
    /// The fields of `args` it selects; `None`: all of them.
    arg_fields: Option<Box<[Box<str>]>>,
}

/// What an expression reads: the identifiers no macro binds (`x` in `list.all(x, …)`) and
/// that are not the namespace of a function (`regexp` in `regexp.match(…)`), and which
/// fields of `args` it selects (`args.amount`), or that it reads `args` whole.
#[derive(Default)]
struct Reads<'e> {
    bound: Vec<&'e str>,
    free: Vec<&'e str>,
    arg_fields: Vec<&'e str>,
    args_whole: bool,
}

impl<'e> Reads<'e> {
    fn is_free(&self, name: &str) -> bool {
        !name.starts_with('@') && !self.bound.contains(&name)
    }

    fn walk(&mut self, expr: &'e IdedExpr) {
        match &expr.expr {
            Expr::Ident(name) => {
                if self.is_free(name) && !self.free.contains(&name.as_str()) {
                    self.free.push(name);
                }
                self.args_whole |= name == "args" && self.is_free(name);
            }
            Expr::Select(s) => match &s.operand.expr {
                Expr::Ident(name) if name == "args" && self.is_free(name) => {
                    if !self.free.contains(&"args") {
                        self.free.push("args");
                    }
                    if !self.arg_fields.contains(&s.field.as_str()) {
                        self.arg_fields.push(&s.field);
                    }
                }
                _ => self.walk(&s.operand),
            },
            Expr::Call(call) => {
                let namespaced = matches!(
                    call.target.as_deref().map(|t| &t.expr),
                    Some(Expr::Ident(ns)) if NAMESPACES.contains(&ns.as_str()) && self.is_free(ns)
                );
                if let Some(target) = call.target.as_deref().filter(|_| !namespaced) {
                    self.walk(target);
                }
                call.args.iter().for_each(|a| self.walk(a));
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range);
                self.walk(&c.accu_init);
                let depth = self.bound.len();
                self.bound.extend([c.iter_var.as_str(), c.accu_var.as_str()]);
                self.bound.extend(c.iter_var2.as_deref());
                for e in [&c.loop_cond, &c.loop_step, &c.result] {
                    self.walk(e);
                }
                self.bound.truncate(depth);
            }
            Expr::List(l) => l.elements.iter().for_each(|e| self.walk(e)),
            Expr::Map(MapExpr { entries }) | Expr::Struct(StructExpr { entries, .. }) => {
                for entry in entries {
                    match &entry.expr {
                        EntryExpr::StructField(f) => self.walk(&f.value),
                        EntryExpr::MapEntry(m) => {
                            self.walk(&m.key);
                            self.walk(&m.value);
                        }
                    }
                }
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
}

/// Namespaces of the functions [`teleport_env`] declares.
const NAMESPACES: [&str; 2] = ["regexp", "strings"];

/// What evaluating a condition gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    True,
    False,
    /// It could not be evaluated to a boolean: a missing or mistyped argument, a bad regex,
    /// arguments that are not JSON. Allow rules read it as "no", deny rules as "yes".
    Error,
}

const ARGS: u8 = 1;
const USER: u8 = 2;
const APP: u8 = 4;
const LABELS: u8 = 8;
const METHOD: u8 = 16;
const VERSION: u8 = 32;
const TIME: u8 = 64;
const VARIABLES: [(&str, u8); 7] = [
    ("args", ARGS),
    ("user", USER),
    ("app", APP),
    ("labels", LABELS),
    ("method", METHOD),
    ("protocol_version", VERSION),
    ("time", TIME),
];

/// The environment every expression compiles and runs in, built once per process.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(teleport_env()));

/// An expression that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// CEL's own message, with the line and column in the expression.
    #[error("{0}")]
    Cel(String),
    #[error("unknown variable '{name}' (known: {known})")]
    UnknownVariable { name: String, known: String },
}

impl Condition {
    /// Compiles `source`; the error is CEL's, with its line and column in the expression.
    /// An expression naming a variable mcp-warden does not provide is refused here, not
    /// at the first call.
    pub fn compile(source: &str) -> Result<Self, ConditionError> {
        let program = ENV.compile(source).map_err(|e| ConditionError::Cel(e.to_string()))?;
        let mut reads = Reads::default();
        reads.walk(program.expression());
        let mut uses = 0;
        for &name in &reads.free {
            match VARIABLES.iter().find(|(n, _)| *n == name) {
                Some((_, bit)) => uses |= bit,
                None => {
                    let known: Vec<_> = VARIABLES.iter().map(|(n, _)| *n).collect();
                    return Err(ConditionError::UnknownVariable { name: name.to_owned(), known: known.join(", ") });
                }
            }
        }
        // Only the fields the expression selects are converted for it, unless it reads
        // `args` whole (`size(args)`, `args[k]`, a macro over it).
        let arg_fields = match reads.args_whole {
            true => None,
            false => Some(reads.arg_fields.iter().map(|f| Box::<str>::from(*f)).collect()),
        };
        Ok(Condition { source: source.into(), program, uses, arg_fields })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression reads the call's arguments.
    pub fn reads_arguments(&self) -> bool {
        self.uses & ARGS != 0
    }

    /// Evaluates against one call. Anything but a boolean result is [`Outcome::Error`].
    pub fn eval(&self, vars: &Vars<'_>) -> Outcome {
        let mut ctx = Context::with_env(ENV.clone());
        if self.uses & ARGS != 0 {
            match vars.arguments().and_then(|a| args_value(a, self.arg_fields.as_deref())) {
                Some(v) => ctx.add_variable_from_value("args", v),
                None => return Outcome::Error,
            }
        }
        if self.uses & USER != 0 {
            ctx.add_variable_from_value("user", user_value(vars.user));
        }
        if self.uses & APP != 0 {
            let app = HashMap::from([("name", Value::from(&*vars.app.name)), ("labels", labels(vars.app))]);
            ctx.add_variable_from_value("app", app);
        }
        if self.uses & LABELS != 0 {
            ctx.add_variable_from_value("labels", labels(vars.app));
        }
        if self.uses & METHOD != 0 {
            ctx.add_variable_from_value("method", vars.method);
        }
        if self.uses & VERSION != 0 {
            ctx.add_variable_from_value("protocol_version", vars.protocol_version.unwrap_or(""));
        }
        if self.uses & TIME != 0 {
            ctx.add_variable_from_value("time", time_value(SystemTime::now()));
        }
        match self.program.execute(&ctx) {
            Ok(Value::Bool(true)) => Outcome::True,
            Ok(Value::Bool(false)) => Outcome::False,
            Ok(_) | Err(_) => Outcome::Error,
        }
    }
}

/// What an expression can read about one call. The arguments are parsed from the request
/// body only when a condition that reads them runs, and then once per call.
#[derive(Debug)]
pub struct Vars<'a> {
    pub user: &'a User,
    pub app: &'a App,
    pub method: &'a str,
    pub protocol_version: Option<&'a str>,
    /// The JSON-RPC body the call came in, and its position when the body is a batch.
    pub body: Option<(&'a [u8], Option<usize>)>,
    parsed: std::cell::OnceCell<Option<serde_json::Map<String, serde_json::Value>>>,
}

impl<'a> Vars<'a> {
    pub fn new(user: &'a User, app: &'a App, method: &'a str) -> Self {
        Vars { user, app, method, protocol_version: None, body: None, parsed: Default::default() }
    }

    /// `params.arguments` (`{}` when absent); `None` when they are not a JSON object.
    fn arguments(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.parsed.get_or_init(|| arguments(self.body?)).as_ref()
    }
}

/// Only `params.arguments` of a message: the rest of the body is skipped, not built.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    params: Option<ParamsArguments<'a>>,
}

#[derive(serde::Deserialize)]
struct ParamsArguments<'a> {
    #[serde(borrow, default)]
    arguments: Option<&'a serde_json::value::RawValue>,
}

fn arguments((body, index): (&[u8], Option<usize>)) -> Option<serde_json::Map<String, serde_json::Value>> {
    let envelope: Envelope<'_> = match index {
        None => serde_json::from_slice(body).ok()?,
        Some(i) => serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(body)
            .ok()?
            .get(i)
            .and_then(|m| serde_json::from_str(m.get()).ok())?,
    };
    match envelope.params.and_then(|p| p.arguments) {
        Some(raw) => serde_json::from_str(raw.get()).ok(),
        None => Some(serde_json::Map::new()),
    }
}

/// The CEL value of `args`: only the `fields` an expression selects, when it names them.
fn args_value(args: &serde_json::Map<String, serde_json::Value>, fields: Option<&[Box<str>]>) -> Option<Value> {
    let mut map = HashMap::with_capacity(fields.map_or(args.len(), <[_]>::len));
    let mut put = |k: &str, v: &serde_json::Value| cel::to_value(v).ok().map(|v| map.insert(k.to_owned(), v));
    match fields {
        Some(fields) => {
            for (k, v) in fields.iter().filter_map(|f| args.get_key_value(&**f)) {
                put(k, v)?;
            }
        }
        None => {
            for (k, v) in args {
                put(k, v)?;
            }
        }
    }
    Some(Value::from(map))
}

fn labels(app: &App) -> Value {
    Value::from(app.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<HashMap<_, _>>())
}

fn user_value(user: &User) -> Value {
    let roles = Value::from(user.role_names.iter().map(|r| Value::from(&**r)).collect::<Vec<_>>());
    let traits: HashMap<&str, Value> = user
        .traits
        .iter()
        .map(|(k, v)| (k.as_str(), Value::from(v.iter().map(|s| Value::from(s.as_str())).collect::<Vec<_>>())))
        .collect();
    let traits = Value::from(traits);
    let spec = HashMap::from([("roles", roles.clone()), ("traits", traits.clone())]);
    Value::from(HashMap::from([
        ("name", Value::from(&*user.name)),
        ("roles", roles),
        ("traits", traits),
        ("spec", Value::from(spec)),
    ]))
}

fn time_value(now: SystemTime) -> Value {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    // 1970-01-01 was a Thursday (4).
    let fields = [
        ("unix", i64::try_from(secs).unwrap_or(i64::MAX)),
        ("hour", i64::try_from(secs % 86_400 / 3600).unwrap_or(0)),
        ("weekday", i64::try_from((days + 4) % 7).unwrap_or(0)),
    ];
    Value::from(fields.into_iter().map(|(k, v)| (k, Value::Int(v))).collect::<HashMap<_, _>>())
}

type FnResult<'c, 'v> = Result<CowVal<'c, 'v>, ExecutionError>;

/// The CEL standard library plus the functions of Teleport's predicate language that role
/// expressions use.
fn teleport_env() -> Env {
    use types::{DYN_TYPE, LIST_TYPE, STRING_TYPE};
    let mut env = Env::stdlib();
    let declared = [
        env.add_overload("contains", "teleport_contains", vec![LIST_TYPE, STRING_TYPE], contains),
        env.add_overload("contains_any", "teleport_contains_any", vec![LIST_TYPE, LIST_TYPE], contains_any),
        env.add_overload("contains_all", "teleport_contains_all", vec![LIST_TYPE, LIST_TYPE], contains_all),
        env.add_overload("regexp.match", "teleport_regexp_match", vec![DYN_TYPE, STRING_TYPE], regexp_match),
        env.add_overload("strings.lower", "teleport_strings_lower", vec![STRING_TYPE], lower),
        env.add_overload("strings.upper", "teleport_strings_upper", vec![STRING_TYPE], upper),
    ];
    for e in declared.into_iter().filter_map(Result::err) {
        // The set is fixed: a clash is a programming error, which the unit tests catch.
        tracing::error!(error = %e, "a role expression function could not be declared");
    }
    env
}

/// The strings of a list argument, or of a single string.
fn strings(args: &[CowVal<'_, '_>], i: usize) -> Result<Vec<Arc<String>>, ExecutionError> {
    let arg = args.get(i).ok_or_else(ExecutionError::missing_argument_or_target)?;
    match Value::try_from(&**arg)? {
        Value::String(s) => Ok(vec![s]),
        Value::List(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(mistyped("a list of strings", other)),
            })
            .collect(),
        other => Err(mistyped("a string or a list of strings", &other)),
    }
}

fn mistyped(want: &str, found: &Value) -> ExecutionError {
    ExecutionError::function_error("argument", format!("expected {want}, found {:?}", found.type_of()))
}

fn bool_result<'c, 'v>(b: bool) -> FnResult<'c, 'v> {
    Ok(CowVal::owned(CelBool::from(b)))
}

fn contains<'c, 'v>(args: Vec<CowVal<'c, 'v>>) -> FnResult<'c, 'v> {
    let (list, item) = (strings(&args, 0)?, strings(&args, 1)?);
    bool_result(item.iter().all(|i| list.contains(i)))
}

fn contains_any<'c, 'v>(args: Vec<CowVal<'c, 'v>>) -> FnResult<'c, 'v> {
    let (list, items) = (strings(&args, 0)?, strings(&args, 1)?);
    bool_result(items.iter().any(|i| list.contains(i)))
}

fn contains_all<'c, 'v>(args: Vec<CowVal<'c, 'v>>) -> FnResult<'c, 'v> {
    let (list, items) = (strings(&args, 0)?, strings(&args, 1)?);
    bool_result(!items.is_empty() && items.iter().all(|i| list.contains(i)))
}

/// Teleport's `regexp.match(value_or_list, pattern)`: true when any value matches; the
/// pattern is a glob (`*`), or a regular expression when written `^…$`.
fn regexp_match<'c, 'v>(args: Vec<CowVal<'c, 'v>>) -> FnResult<'c, 'v> {
    let values = strings(&args, 0)?;
    let pattern = strings(&args, 1)?;
    let pattern = pattern.first().map_or("", |p| p.as_str());
    let re = match pattern.starts_with('^') && pattern.ends_with('$') {
        true => pattern.to_owned(),
        false => format!("^{}$", regex::escape(pattern).replace("\\*", ".*")),
    };
    let re = regex::Regex::new(&re)
        .map_err(|e| ExecutionError::function_error("regexp.match", format!("'{pattern}' is no valid pattern: {e}")))?;
    bool_result(values.iter().any(|v| re.is_match(v)))
}

fn lower<'c, 'v>(args: Vec<CowVal<'c, 'v>>) -> FnResult<'c, 'v> {
    let s = strings(&args, 0)?;
    Ok(CowVal::owned(types::CelString::from(s.first().map_or(String::new(), |s| s.to_lowercase()))))
}

fn upper<'c, 'v>(args: Vec<CowVal<'c, 'v>>) -> FnResult<'c, 'v> {
    let s = strings(&args, 0)?;
    Ok(CowVal::owned(types::CelString::from(s.first().map_or(String::new(), |s| s.to_uppercase()))))
}
