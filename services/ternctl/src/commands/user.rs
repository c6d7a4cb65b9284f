//! `ternctl user add|list|remove|passwd`.

use std::io::BufRead;

use anyhow::{bail, Context};
use serde::Serialize;
use tern_proto::store::v1::{
    AddUserRequest, ListUsersRequest, RemoveUserRequest, SetPasswordRequest, User,
};

use super::Ctx;
use crate::cli::UserCmd;
use crate::output::{self, Table};

#[derive(Serialize)]
struct UserJson {
    id: u64,
    address: String,
    /// 0 = unlimited.
    quota_bytes: u64,
    used_bytes: u64,
}

impl From<User> for UserJson {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            address: u.address,
            quota_bytes: u.quota_bytes,
            used_bytes: u.used_bytes,
        }
    }
}

pub async fn run(cmd: UserCmd, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Add {
            address,
            password: _,
            quota,
        } => {
            let password = password_from_stdin()?;
            let mut dir = ctx.store().await?.directory();
            let u: UserJson = dir
                .add_user(AddUserRequest {
                    address,
                    password,
                    quota_bytes: quota,
                })
                .await?
                .into_inner()
                .into();
            ctx.print(&u, || {
                format!(
                    "added user {} (id {}, quota {})",
                    u.address,
                    u.id,
                    output::quota(u.quota_bytes)
                )
            })
        }
        UserCmd::List { domain } => {
            let mut dir = ctx.store().await?.directory();
            let resp = dir
                .list_users(ListUsersRequest {
                    domain: domain.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let users: Vec<UserJson> = resp.users.into_iter().map(Into::into).collect();
            ctx.print(&users, || {
                if users.is_empty() {
                    return "no users".into();
                }
                let mut t = Table::new(&["ADDRESS", "ID", "QUOTA", "USED"]);
                for u in &users {
                    t.row(vec![
                        u.address.clone(),
                        u.id.to_string(),
                        output::quota(u.quota_bytes),
                        output::bytes(u.used_bytes),
                    ]);
                }
                t.render()
            })
        }
        UserCmd::Remove { address } => {
            let mut dir = ctx.store().await?.directory();
            dir.remove_user(RemoveUserRequest {
                address: address.clone(),
            })
            .await?;
            ctx.done(format!("removed user {address}"))
        }
        UserCmd::Passwd {
            address,
            password: _,
        } => {
            let password = password_from_stdin()?;
            let mut dir = ctx.store().await?.directory();
            dir.set_password(SetPasswordRequest {
                address: address.clone(),
                password,
            })
            .await?;
            ctx.done(format!("password changed for {address}"))
        }
    }
}

fn password_from_stdin() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // Typed by hand: prompt on stderr and keep the password off the screen.
        eprint!("password: ");
        let _no_echo = EchoOff::new(&stdin);
        let password = read_password(stdin.lock());
        eprintln!();
        return password;
    }
    read_password(stdin.lock())
}

/// The first line of `input` without its line ending. An empty password is refused here rather
/// than sent: it is never what the operator meant (usually an empty pipe or a stray newline).
pub fn read_password(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.is_empty() {
        bail!("empty password: --password-stdin reads the password from the first line of standard input");
    }
    Ok(password.to_string())
}

/// Turns terminal echo off for its lifetime (restored on drop, also on error paths).
struct EchoOff {
    fd: i32,
    saved: Option<libc::termios>,
}

impl EchoOff {
    fn new(stdin: &std::io::Stdin) -> Self {
        use std::os::fd::AsRawFd;
        let fd = stdin.as_raw_fd();
        // SAFETY: termios is plain data; tcgetattr fills it for a valid terminal fd and the
        // result is checked before use.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            (libc::tcgetattr(fd, &mut t) == 0).then_some(t)
        };
        if let Some(t) = saved {
            let mut quiet = t;
            quiet.c_lflag &= !libc::ECHO;
            quiet.c_lflag |= libc::ECHONL;
            // SAFETY: fd is a terminal (tcgetattr succeeded) and `quiet` is a valid termios.
            unsafe {
                libc::tcsetattr(fd, libc::TCSANOW, &quiet);
            }
        }
        Self { fd, saved }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restores the attributes read from the same fd.
            unsafe {
                libc::tcsetattr(self.fd, libc::TCSANOW, &t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read_password;

    #[test]
    fn first_line_without_line_ending() {
        assert_eq!(read_password(&b"s3cret\r\nrest\n"[..]).unwrap(), "s3cret");
        assert_eq!(read_password(&b"s3cret\n"[..]).unwrap(), "s3cret");
        assert_eq!(read_password(&b"no newline"[..]).unwrap(), "no newline");
        // Inner and leading spaces are part of the password.
        assert_eq!(read_password(&b" a b \n"[..]).unwrap(), " a b ");
    }

    #[test]
    fn empty_is_refused() {
        assert!(read_password(&b""[..]).is_err());
        assert!(read_password(&b"\n"[..]).is_err());
        assert!(read_password(&b"\r\n"[..]).is_err());
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        assert!(read_password(&b"\xff\xfe\n"[..]).is_err());
    }
}
