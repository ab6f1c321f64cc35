//! The Rhai side of a test: loading a test script, its settings, and calling its phases
//! with `this` bound to the test object and arguments picked by parameter name.

use std::collections::HashMap;
use std::path::Path;

use rhai::{CallFnOptions, Dynamic, Engine, FnPtr, Map, Scope, AST};

use crate::args::{cherry_pick, truthy};
use crate::lifecycle::{Phase, Settings, SharedState, TestBody};
use crate::outcome::{escape_of, locate, Escape, Outcome};
use crate::profilers::{ProfilersHandle, TestProfilers};
use crate::status::Status;

/// The test object scripts see as `this`.
#[derive(Debug, Clone)]
pub struct TestObj(pub SharedState);

/// Properties of `this` that scripts may read but not set.
pub const READ_ONLY: [&str; 11] = [
    "name",
    "tagged_testname",
    "outputdir",
    "resultsdir",
    "profdir",
    "debugdir",
    "bindir",
    "srcdir",
    "tmpdir",
    "iteration",
    "params",
];

/// A loaded test script.
pub struct ScriptTest<'e> {
    engine: &'e Engine,
    ast: AST,
    file: String,
    this: Dynamic,
    /// Parameter names of each phase the script defines.
    phases: HashMap<Phase, Vec<String>>,
    /// The job's profilers, run around profiled runs.
    profilers: TestProfilers<'e>,
}

/// Compiles a script, turning a syntax error into `Unhandled SyntaxError: ... (file:l:c)`.
pub fn compile(engine: &Engine, path: &Path) -> Result<AST, String> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| format!("cannot read {file}: {e}"))?;
    let mut ast = engine.compile(&source).map_err(|e| {
        format!(
            "Unhandled SyntaxError: {} ({})",
            e.err_type(),
            locate(&file, e.position())
        )
    })?;
    ast.set_source(file);
    crate::api::remember_functions(&ast);
    Ok(ast)
}

impl<'e> ScriptTest<'e> {
    /// Loads the test `name` from `path`: compiles it, checks its phases and reads its
    /// top-level settings.
    pub fn load(
        engine: &'e Engine,
        path: &Path,
        name: &str,
        state: SharedState,
    ) -> Result<(ScriptTest<'e>, Settings), Outcome> {
        let file = path.display().to_string();
        let err = |m: String| Outcome::new(Status::Error, m);
        let ast = compile(engine, path).map_err(err)?;
        let mut phases: HashMap<Phase, Vec<String>> = HashMap::new();
        for f in ast.iter_functions() {
            let Some(phase) = Phase::ALL.iter().copied().find(|p| p.name() == f.name) else {
                continue;
            };
            let params: Vec<String> = f.params.iter().map(|p| p.to_string()).collect();
            if let Some(prev) = phases.get(&phase) {
                return Err(err(format!(
                    "{name}: phase {} is defined more than once (with {} and {} parameters); phases cannot be overloaded",
                    phase.name(),
                    prev.len(),
                    params.len()
                )));
            }
            phases.insert(phase, params);
        }
        if !phases.contains_key(&Phase::RunOnce) && !phases.contains_key(&Phase::Execute) {
            return Err(err(format!("{name} defines neither run_once nor execute")));
        }
        let mut scope = Scope::new();
        engine
            .run_ast_with_scope(&mut scope, &ast)
            .map_err(|e| escape_of(e, &file).into_outcome(Status::Error))?;
        let defaults = Settings::default();
        let flag = |n: &str, d: bool| scope.get(n).map(truthy).unwrap_or(d);
        let settings = Settings {
            version: scope
                .get_value::<Dynamic>("version")
                .unwrap_or(defaults.version),
            preserve_srcdir: flag("preserve_srcdir", false),
            postprocess_profiled_run: flag("postprocess_profiled_run", false),
            strict_params: flag("strict_params", true),
        };
        Ok((
            ScriptTest {
                engine,
                ast,
                file,
                this: Dynamic::from(TestObj(state.clone())),
                phases,
                profilers: TestProfilers::new(
                    engine,
                    ProfilersHandle::default(),
                    Dynamic::from(TestObj(state)),
                ),
            },
            settings,
        ))
    }

    /// Runs the job's profilers around this test's profiled runs.
    pub fn with_profilers(mut self, profilers: ProfilersHandle) -> Self {
        self.profilers = TestProfilers::new(self.engine, profilers, self.this.clone());
        self
    }

    fn call_fn(&mut self, name: &str, args: Vec<Dynamic>) -> Result<(), Escape> {
        let opts = CallFnOptions::new()
            .eval_ast(false)
            .rewind_scope(true)
            .bind_this_ptr(&mut self.this);
        self.engine
            .call_fn_with_options::<Dynamic>(opts, &mut Scope::new(), &self.ast, name, args)
            .map(|_| ())
            .map_err(|e| escape_of(e, &self.file))
    }
}

impl TestBody for ScriptTest<'_> {
    fn has(&self, phase: Phase) -> bool {
        self.phases.contains_key(&phase)
    }

    fn declares(&self, name: &str) -> bool {
        self.phases.values().any(|ps| ps.iter().any(|p| p == name))
    }

    fn call(&mut self, phase: Phase, available: &Map) -> Result<(), Escape> {
        let Some(params) = self.phases.get(&phase) else {
            return Ok(());
        };
        let args = cherry_pick(params, available);
        self.call_fn(phase.name(), args)
    }

    fn profilers(&self) -> Option<&dyn crate::lifecycle::Profilers> {
        Some(&self.profilers)
    }

    fn hooks(&mut self, before: bool) -> Result<(), Escape> {
        let hooks: Vec<FnPtr> = {
            let obj = self
                .this
                .read_lock::<TestObj>()
                .expect("this is a test object");
            let st = obj.0.borrow();
            if before {
                st.before_hooks.clone()
            } else {
                st.after_hooks.clone()
            }
        };
        for hook in hooks {
            let _ = hook
                .call::<Dynamic>(self.engine, &self.ast, (self.this.clone(),))
                .map_err(|e| escape_of(e, &self.file))?;
        }
        Ok(())
    }
}
