//! The example external traffic component (`examples/rpc-component.sh`),
//! run as a user would run it, for the stories that declare an `rpc` component.

use std::process::{Child, Command, Stdio};

/// The example external component, run as the user would run it.
pub(crate) struct ExampleComponent(Child);

impl ExampleComponent {
    pub(crate) fn start(namespace: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rpc-component.sh");
        let child = Command::new("bash")
            .args([script, namespace, "rpc"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that stopping it stops its kubectl children too.
            .process_group(0)
            .spawn()
            .expect("start examples/rpc-component.sh (needs kubectl on PATH)");
        Self(child)
    }
}

impl Drop for ExampleComponent {
    fn drop(&mut self) {
        // The whole group: a kubectl still running after bash is gone could add
        // a finalizer back after the test's cleanup removed it.
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}
