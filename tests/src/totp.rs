//! The approver's authenticator app, for tests: codes computed from the
//! enrolled secret exactly as a phone would.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use totp_rs::{Algorithm, Secret, TOTP};

pub struct Authenticator {
    totp: TOTP,
    period: u64,
    /// Highest time step used so far: the service refuses any step at or
    /// below it (replay protection), so each new code must be for a later one.
    last_step: Option<u64>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Authenticator {
    /// From an `otpauth://totp/...` URI as `airlockctl totp setup` prints it.
    pub fn from_uri(uri: &str) -> Authenticator {
        let totp = TOTP::from_url_unchecked(uri).expect("otpauth URI");
        assert_eq!(totp.algorithm, Algorithm::SHA1);
        assert_eq!(totp.digits, 6);
        let period = totp.step;
        Authenticator {
            totp,
            period,
            last_step: None,
        }
    }

    pub fn secret_base32(&self) -> String {
        Secret::Raw(self.totp.secret.clone())
            .to_encoded()
            .to_string()
    }

    pub fn code_at_step(&self, step: u64) -> String {
        self.totp.generate(step * self.period)
    }

    /// A code the service will accept now: the earliest step within the ±1
    /// skew window that is later than every step used before, keeping away
    /// from the edge of the window. Waits for the clock when all three are
    /// spent.
    pub fn next_code(&mut self) -> String {
        loop {
            let t = now();
            let current = t / self.period;
            let into_window = t % self.period;
            let earliest = if into_window + 5 >= self.period {
                current
            } else {
                current - 1
            };
            let step = match self.last_step {
                Some(last) if last >= earliest => last + 1,
                _ => earliest,
            };
            if step <= current + 1 {
                self.last_step = Some(step);
                return self.code_at_step(step);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The code for the step most recently used (to test replay).
    pub fn last_code(&self) -> String {
        self.code_at_step(self.last_step.expect("no code used yet"))
    }

    /// A wrong code (one off the current one in its last digit).
    pub fn wrong_code(&self) -> String {
        let code = self.totp.generate(now());
        let last = (code.as_bytes()[5] - b'0' + 1) % 10;
        format!("{}{}", &code[..5], last)
    }
}
