//! `import "name" as m;` in scripts: modules are `name.rhai` files found relative to the
//! importing script, and only inside the folder of the control file or of the script that
//! is running (the test's folder in a test process). Anything else is refused with a
//! sentence, before the file is read.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use crate::outcome::native_error;

/// How deep imports may nest (a module importing a module ...).
pub const MAX_IMPORT_DEPTH: usize = 32;

thread_local! {
    /// The modules being loaded, outermost first: catches cycles and bounds the nesting,
    /// since each level evaluates a module on the native stack.
    static LOADING: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
}

/// The module resolver of autorun's engine.
pub struct Resolver {
    /// The control file's folder, always allowed.
    control_dir: PathBuf,
}

impl Resolver {
    /// A resolver that allows the folder `control_dir` and the running script's folder.
    pub fn new(control_dir: &Path) -> Resolver {
        Resolver {
            control_dir: control_dir.to_path_buf(),
        }
    }

    /// The folders imports may read from: the control file's and the running script's.
    fn roots(&self) -> Vec<PathBuf> {
        let mut roots = vec![self.control_dir.clone()];
        if let Some(dir) = Path::new(&crate::api::current_script()).parent() {
            if !dir.as_os_str().is_empty() {
                roots.push(dir.to_path_buf());
            }
        }
        roots
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect()
    }

    /// The file `path` names, relative to the importing script's folder, checked against
    /// the allowed folders.
    fn locate(&self, source: Option<&str>, path: &str) -> Result<PathBuf, String> {
        if path.contains('\0') {
            return Err(format!("import {path:?}: a module name cannot hold NUL"));
        }
        let base = source
            .map(Path::new)
            .filter(|s| s.is_absolute())
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.control_dir.clone());
        let mut file = base.join(path);
        file.set_extension("rhai");
        let real = std::fs::canonicalize(&file)
            .map_err(|e| format!("import \"{path}\": cannot read {}: {e}", file.display()))?;
        let roots = self.roots();
        if !roots.iter().any(|r| real.starts_with(r)) {
            let shown: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            return Err(format!(
                "import \"{path}\": {} is outside the folders scripts may import from ({})",
                real.display(),
                shown.join(", ")
            ));
        }
        Ok(real)
    }
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let at = |e: Box<EvalAltResult>| -> Box<EvalAltResult> {
            let mut e = *e;
            e.set_position(pos);
            e.into()
        };
        let file = self
            .locate(source, path)
            .map_err(|m| at(native_error("ImportError", m)))?;
        let entered = LOADING.with(|l| {
            let mut l = l.borrow_mut();
            if l.contains(&file) {
                Err(format!(
                    "import \"{path}\": {} imports itself",
                    file.display()
                ))
            } else if l.len() >= MAX_IMPORT_DEPTH {
                Err(format!(
                    "import \"{path}\": modules nested more than {MAX_IMPORT_DEPTH} deep"
                ))
            } else {
                l.push(file.clone());
                Ok(())
            }
        });
        entered.map_err(|m| at(native_error("ImportError", m)))?;
        let result = load(engine, &file);
        LOADING.with(|l| l.borrow_mut().pop());
        result.map_err(|e| EvalAltResult::ErrorInModule(path.to_string(), e, pos).into())
    }
}

/// Compiles and evaluates the module in `file`, its source set to the file's full path so
/// that its own imports and error positions name it.
fn load(engine: &Engine, file: &Path) -> Result<Shared<Module>, Box<EvalAltResult>> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| native_error("ImportError", format!("cannot read {shown}: {e}")))?;
    let mut ast = engine.compile(&text).map_err(|e| {
        native_error(
            "SyntaxError",
            format!(
                "{} ({})",
                e.err_type(),
                crate::outcome::locate(&shown, e.position())
            ),
        )
    })?;
    ast.set_source(shown);
    crate::api::remember_module_functions(&ast);
    Ok(Module::eval_ast_as_new(Scope::new(), &ast, engine)?.into())
}
