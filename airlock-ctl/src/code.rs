//! Reading a TOTP code: from the terminal without echo, or from stdin for
//! scripts. Never from argv, where other users could read it in `ps`.

use std::io::BufRead;

use airlock_common::limits::TOTP_DIGITS;
use zeroize::Zeroizing;

pub fn read_code(from_stdin: bool, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    let code = if from_stdin {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().lock().read_line(&mut line)?;
        Zeroizing::new(line.trim().to_string())
    } else {
        Zeroizing::new(
            rpassword::prompt_password(prompt)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read the code from the terminal ({e}); use --code-stdin in scripts"
                    )
                })?
                .trim()
                .to_string(),
        )
    };
    anyhow::ensure!(
        code.len() == TOTP_DIGITS && code.bytes().all(|b| b.is_ascii_digit()),
        "a TOTP code is {TOTP_DIGITS} digits"
    );
    Ok(code)
}
