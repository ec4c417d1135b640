//! `zhibao fetch`: an attachment saved to a file, checked against the
//! digest and size the origin signed, with progress on a terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use prost::Message;
use zhibao::client::{ClientError, Operator};
use zhibao::digest::{Sha256, hex};
use zhibao::proto::Report;

/// Streams attachment `index` of item `id` into `output`: written to a
/// temporary file beside it, checked, then renamed into place, so a file
/// under that name is always whole and verified.
pub(crate) async fn run(
    op: &mut Operator,
    id: &str,
    index: u32,
    output: &Path,
) -> anyhow::Result<()> {
    if output.exists() {
        bail!("{} exists; give another --output", output.display());
    }
    let status = op.show(id).await?;
    let report = status
        .report
        .as_ref()
        .and_then(|r| Report::decode(r.report.as_slice()).ok())
        .with_context(|| format!("the node did not send item {id}'s report"))?;
    let Some(a) = usize::try_from(index)
        .ok()
        .and_then(|i| report.attachments.get(i))
    else {
        bail!(
            "item {id} has {} attachment(s); there is no attachment {index}",
            report.attachments.len()
        );
    };
    let partial = output.with_extension("zhibao-partial");
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let result = copy(op, id, index, a.size, &mut file).await;
    let check = result.and_then(|(digest, len)| {
        if len != a.size || digest.as_slice() != a.sha256.as_slice() {
            bail!(
                "attachment {index} ({}) does not match what the origin signed: \
                 {len} bytes, sha256:{} (signed: {} bytes, sha256:{}); not saved",
                a.name,
                hex(&digest),
                a.size,
                hex(&a.sha256)
            );
        }
        file.sync_all().context("writing the file to disk")?;
        Ok(())
    });
    if let Err(e) = check {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, output)
        .with_context(|| format!("renaming {} into place", partial.display()))?;
    let lang = super::when::Lang::choose(None)?;
    println!(
        "{}",
        match lang {
            super::when::Lang::Zh => format!(
                "已保存 {}（{} 字节，sha256:{}，与 {} 的签名一致）到 {}",
                a.name,
                a.size,
                hex(&a.sha256),
                report.origin,
                output.display()
            ),
            super::when::Lang::En => format!(
                "saved {} ({} bytes, sha256:{} as signed by {}) to {}",
                a.name,
                a.size,
                hex(&a.sha256),
                report.origin,
                output.display()
            ),
        }
    );
    Ok(())
}

/// Writes the chunks into `file`; returns their digest and length.
async fn copy(
    op: &mut Operator,
    id: &str,
    index: u32,
    size: u64,
    file: &mut std::fs::File,
) -> anyhow::Result<([u8; 32], u64)> {
    let mut chunks = op.attachment(id, index).await?;
    let mut ctx = Sha256::default();
    let mut len = 0u64;
    let progress = std::io::stderr().is_terminal();
    while let Some(chunk) = chunks.message().await.map_err(ClientError::from)? {
        len += chunk.data.len() as u64;
        if len > size {
            bail!("the node sent more than the {size} bytes the origin signed");
        }
        ctx.update(&chunk.data);
        file.write_all(&chunk.data).context("writing the file")?;
        if progress {
            let pct = len.saturating_mul(100).checked_div(size).unwrap_or(100);
            eprint!("\r{len} of {size} bytes ({pct}%)");
        }
    }
    if progress {
        eprintln!();
    }
    Ok((ctx.finish(), len))
}
