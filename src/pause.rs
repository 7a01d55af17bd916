//! The double-click pause. Explorer opens a console window for a console
//! program and closes it when the program ends, taking the last message
//! (a goodbye, or why the server could not be reached) with it. Such a
//! program is the only process on its console, whereas one started from a
//! shell shares the console with the shell: so it waits for Enter exactly
//! when it is alone. Elsewhere there is no such notion and it never waits.
//! (Ctrl-C ends at once, as the user asked.)

/// Waits for Enter if this process is alone on its console, unless
/// `--no-pause` was given.
pub fn at_exit(no_pause: bool) {
    if should_pause(console_processes(), no_pause) {
        use std::io::Write;
        eprint!("\nPress Enter to close this window.");
        let _ = std::io::stderr().flush();
        let _ = std::io::stdin().read_line(&mut String::new());
    }
}

/// `attached`: how many processes share this one's console, if it has
/// one and the platform can tell.
pub fn should_pause(attached: Option<u32>, no_pause: bool) -> bool {
    attached == Some(1) && !no_pause
}

#[cfg(windows)]
fn console_processes() -> Option<u32> {
    use windows_sys::Win32::System::Console::GetConsoleProcessList;
    let mut ids = [0u32; 4];
    // SAFETY: the buffer and its length match; the call returns the
    // number of processes attached (more than 4 is still a count), or 0
    // without a console.
    let n = unsafe { GetConsoleProcessList(ids.as_mut_ptr(), ids.len() as u32) };
    (n > 0).then_some(n)
}

#[cfg(not(windows))]
fn console_processes() -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::should_pause;

    #[test]
    fn waits_only_when_alone_on_its_console() {
        // Double-clicked: Explorer's console holds only chatapp.
        assert!(should_pause(Some(1), false));
        assert!(!should_pause(Some(1), true), "--no-pause");
        // From cmd or PowerShell: the shell shares the console.
        assert!(!should_pause(Some(2), false));
        assert!(!should_pause(Some(5), false));
        // No console (a service, output redirected by a parent without
        // one) or a platform without the notion (Linux, macOS).
        assert!(!should_pause(None, false));
        assert!(!should_pause(None, true));
    }

    #[cfg(not(windows))]
    #[test]
    fn never_waits_off_windows() {
        assert_eq!(super::console_processes(), None);
        assert!(!should_pause(super::console_processes(), false));
    }
}
