//! The `webhook-notification` operator CLI; everything is in the library's `cli` module, which
//! the Python wheel's console script reaches too.

fn main() {
    std::process::exit(webhook_notification::run_cli(std::env::args_os()));
}
