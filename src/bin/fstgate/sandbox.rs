//! `fstgate sandbox-check`: what this host's kernel enforces on the model worker.

/// `fstgate sandbox-check`: true when the confinement behaves as it should.
pub(crate) fn sandbox_check(confined: bool, json: bool) -> anyhow::Result<bool> {
    let check = fstgate::worker::check::run(confined)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&check)?);
    } else {
        print!("{}", check.render());
    }
    Ok(check.as_expected)
}
