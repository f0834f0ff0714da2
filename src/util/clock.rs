//! Time as a dependency: code that reads the clock takes a `Clock`, so tests can fix or advance time.

use std::sync::Mutex;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> jiff::Timestamp;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct FakeClock {
    now: Mutex<jiff::Timestamp>,
}

impl FakeClock {
    pub fn new(now: jiff::Timestamp) -> Self {
        FakeClock {
            now: Mutex::new(now),
        }
    }

    pub fn advance(&self, by: jiff::SignedDuration) {
        let mut now = self.now.lock().expect("clock lock");
        *now = now.checked_add(by).expect("time in range");
    }
}

impl Clock for FakeClock {
    fn now(&self) -> jiff::Timestamp {
        *self.now.lock().expect("clock lock")
    }
}
