//! Safe wrapper over module_builder.cpp: assemble a TorchScript module from tensors and
//! TorchScript source, then save it as an ordinary archive.
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;

use tch::Tensor;

use crate::error::{Error, Result};

unsafe extern "C" {
    fn fstgate_module_new(name: *const c_char, parent: *mut c_void, err: *mut *mut c_char) -> *mut c_void;
    fn fstgate_module_free(module: *mut c_void);
    fn fstgate_module_register_tensor(
        module: *mut c_void,
        name: *const c_char,
        tensor: *mut c_void,
        is_parameter: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn fstgate_module_register_submodule(
        module: *mut c_void,
        name: *const c_char,
        child: *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    fn fstgate_module_define(module: *mut c_void, source: *const c_char, err: *mut *mut c_char) -> c_int;
    fn fstgate_module_save(module: *mut c_void, path: *const c_char, err: *mut *mut c_char) -> c_int;
    fn fstgate_string_free(s: *mut c_char);
}

/// An owned torch::jit::Module under construction. Methods take &self: the module lives on the
/// C++ side, and the raw pointer keeps this type !Send and !Sync.
pub(super) struct ScriptModule {
    raw: *mut c_void,
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Settings(format!("`{s}` contains a NUL byte")))
}

/// Turns a C++ exception message into an error, freeing it.
fn check(rc: c_int, err: *mut c_char, what: &str) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: on failure the shim set `err` to a malloc'd NUL-terminated string.
    let message = unsafe {
        let message = CStr::from_ptr(err).to_string_lossy().into_owned();
        fstgate_string_free(err);
        message
    };
    Err(Error::Settings(format!("{what}: {}", crate::model::first_line(&message))))
}

impl ScriptModule {
    /// A module of class `__torch__.<name>`; children share their parent's compilation unit.
    pub(super) fn new(name: &str, parent: Option<&ScriptModule>) -> Result<Self> {
        let name = c_string(&format!("__torch__.fstgate.{name}"))?;
        let mut err = std::ptr::null_mut();
        let parent = parent.map_or(std::ptr::null_mut(), |p| p.raw);
        // SAFETY: valid C string, parent is a live module or null.
        let raw = unsafe { fstgate_module_new(name.as_ptr(), parent, &mut err) };
        check(if raw.is_null() { -1 } else { 0 }, err, "creating a module")?;
        Ok(ScriptModule { raw })
    }

    pub(super) fn add_tensor(&self, name: &str, tensor: &Tensor, is_parameter: bool) -> Result<()> {
        let c_name = c_string(name)?;
        let mut err = std::ptr::null_mut();
        // SAFETY: the shim copies the tensor handle (a refcount), it does not take ownership.
        let rc = unsafe {
            fstgate_module_register_tensor(
                self.raw,
                c_name.as_ptr(),
                tensor.as_ptr() as *mut c_void,
                c_int::from(is_parameter),
                &mut err,
            )
        };
        check(rc, err, &format!("registering {name}"))
    }

    pub(super) fn add_child(&self, name: &str, child: &ScriptModule) -> Result<()> {
        let c_name = c_string(name)?;
        let mut err = std::ptr::null_mut();
        // SAFETY: both modules are live; the parent keeps its own handle to the child.
        let rc = unsafe { fstgate_module_register_submodule(self.raw, c_name.as_ptr(), child.raw, &mut err) };
        check(rc, err, &format!("registering submodule {name}"))
    }

    pub(super) fn define(&self, source: &str) -> Result<()> {
        let c_source = c_string(source)?;
        let mut err = std::ptr::null_mut();
        // SAFETY: valid module and C string.
        let rc = unsafe { fstgate_module_define(self.raw, c_source.as_ptr(), &mut err) };
        check(rc, err, "compiling TorchScript")
    }

    pub(super) fn save(&self, path: &Path) -> Result<()> {
        let c_path = c_string(&path.to_string_lossy())?;
        let mut err = std::ptr::null_mut();
        // SAFETY: valid module and C string.
        let rc = unsafe { fstgate_module_save(self.raw, c_path.as_ptr(), &mut err) };
        check(rc, err, &format!("saving {}", path.display()))
    }
}

impl Drop for ScriptModule {
    fn drop(&mut self) {
        // SAFETY: `raw` came from fstgate_module_new and is freed once.
        unsafe { fstgate_module_free(self.raw) }
    }
}
