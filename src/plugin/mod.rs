//! `kubectl cafe`: watch a release live and operate it. Every verb speaks the
//! existing API only (the confirmation annotation, spec fields), so plain
//! `kubectl` keeps working beside it.
//!
//! Exit codes: 0 done (the verb succeeded; for `get -w` and `status`, the
//! release completed, or waits for a person with `--success-on-wait`);
//! 1 the release is stalled, or the verb was refused (nothing to confirm,
//! nothing to roll back to, not found, or the API server refused the write:
//! RBAC, an admission policy such as four-eyes, validation — its message is
//! printed as kubectl prints it); 2 `--timeout` passed; 3 the cluster could
//! not be reached or the command line is wrong.
//!
//! Where things are: `cli` the command line; `session` the client, the
//! namespace and `Failure`; one file per verb (`get`, `list`, `confirm`,
//! `pause` for pause and resume, `rollback`, `history`, `set_image`,
//! `freeze` for freeze and unfreeze, `status`, `console/`); `watch` the
//! live loop of `get -w` and `status`; `view` the text they print.

mod cli;
mod confirm;
mod console;
mod freeze;
mod get;
pub(crate) mod history;
mod list;
mod pause;
mod rollback;
mod session;
mod set_image;
mod status;
pub mod view;
mod watch;

pub use cli::{Cli, Output, SetWhat, Verb, parse_duration};
use session::Session;
pub use session::{Failure, Kind};

/// Runs the command line; returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    match dispatch(&cli).await {
        Ok(code) => code,
        Err(f) if f.verbatim() => {
            eprintln!("{}", f.message);
            f.code()
        }
        Err(f) => {
            eprintln!("error: {}", f.message);
            f.code()
        }
    }
}

async fn dispatch(cli: &Cli) -> Result<u8, Failure> {
    let s = Session::connect(cli).await?;
    match &cli.verb {
        Verb::Get {
            name,
            watch,
            timeout,
        } => get::get(&s, name, *watch, *timeout).await,
        Verb::List { all_namespaces } => list::list(&s, *all_namespaces).await,
        Verb::Confirm { name } => say(confirm::confirm(&s, name).await?),
        Verb::Pause { name } => say(pause::pause(&s, name, true).await?),
        Verb::Resume { name } => say(pause::pause(&s, name, false).await?),
        Verb::Rollback { name, to_revision } => {
            say(rollback::rollback(&s, name, *to_revision).await?)
        }
        Verb::History { name } => history::history(&s, name).await,
        Verb::Set {
            what: SetWhat::Image { name, images },
        } => set_image::set_image(&s, name, images).await,
        Verb::Freeze {
            reason,
            namespaces,
            selector,
            name,
        } => {
            let asked = freeze::Asked {
                reason,
                namespaces,
                selector: selector.as_deref(),
                name: name.as_deref(),
            };
            freeze::freeze(&s, &asked).await
        }
        Verb::Unfreeze { names, all } => freeze::unfreeze(&s, names, *all).await,
        Verb::Console(options) => console::serve(s, options).await,
        Verb::Status {
            name,
            timeout,
            success_on_wait,
            watch,
        } => status::status(&s, name, *timeout, *success_on_wait, *watch).await,
    }
}

/// A verb's success, printed: exit 0.
fn say(message: String) -> Result<u8, Failure> {
    println!("{message}");
    Ok(0)
}
