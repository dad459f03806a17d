//! `ipam-cli backup FILE`: downloads the contacted node's backup into FILE, checking the
//! trailing SHA-256 before keeping it (a cut transfer never leaves a file that looks whole).

use std::io::{BufReader, Read, Write};
use std::path::Path;

use anyhow::Context;
use ipam_client::Client;
use sha2::{Digest, Sha256};

use crate::args::Output;

/// First bytes of a backup (`ipam-raft`'s format).
const MAGIC: &[u8; 8] = b"IPAMBKUP";

/// Writes the backup to `FILE.part`, verifies it, then renames it to `file`.
pub async fn backup(client: &Client, out: Output, file: &Path) -> anyhow::Result<()> {
    let part = file.with_extension("part");
    let result = async {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?,
        );
        let bytes = client.backup_to(&mut f).await?;
        let f = f.into_inner().context("writing the backup")?;
        f.sync_all().context("syncing the backup")?;
        verify(&part)?;
        std::fs::rename(&part, file).with_context(|| format!("renaming to {}", file.display()))?;
        anyhow::Ok(bytes)
    }
    .await;
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    let text = match out {
        Output::Json => format!(
            "{}\n",
            serde_json::json!({"file": file.display().to_string(), "bytes": bytes})
        ),
        Output::Table | Output::Csv => format!(
            "backup of {} written to {} ({bytes} bytes, checksum verified)\n",
            client.endpoint(),
            file.display()
        ),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Checks the magic bytes and the trailing SHA-256 of everything before it.
fn verify(path: &Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let len = f.metadata()?.len();
    anyhow::ensure!(
        len >= MAGIC.len() as u64 + 32,
        "the backup is too short ({len} bytes): the transfer was cut"
    );
    let mut r = BufReader::new(f);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    anyhow::ensure!(&magic == MAGIC, "the node did not send a raft-ipam backup");
    let mut hasher = Sha256::new();
    hasher.update(magic);
    std::io::copy(&mut (&mut r).take(len - 8 - 32), &mut hasher)?;
    let mut expected = [0u8; 32];
    r.read_exact(&mut expected)?;
    anyhow::ensure!(
        hasher.finalize().as_slice() == expected,
        "the backup's checksum does not match: the transfer was damaged"
    );
    Ok(())
}
