//! The office's figures (采用记分) at a hub: gathered from the store's fact
//! tables and the solicitations published here, scored by
//! [`crate::score`] under the configured rules, and rendered as a table,
//! CSV, JSON or the bulletin (月度通报, 季度小结); a bulletin published is a
//! signed notice pushed down to every county like a solicitation.
//!
//! Nothing here is kept but what is derived from the signed history: the
//! same store gives the same figures, after any restart or replay.

use std::str::FromStr;

use prost::Message;

use super::error::Error;
use super::office::{Office, OfficeError};
use super::said::Said;
use super::who::Actor;
use crate::class::Class;
use crate::notice::{self, NoticeError};
use crate::proto::{
    Bulletin, Notice, NoticeView, SignedNotice, StatsRequest, StatsResponse, TargetRequest,
    notice::Body,
};
use crate::score::{self, Lang, Period, Stats};
use crate::store::NoticeOutcome;

impl Office {
    /// The figures for `req.period`, scored now.
    async fn figures(&self, period: Period) -> Result<Stats, Error> {
        let offset = self.utc_offset_ms;
        let (start, end) = period.bounds(offset);
        let (year_start, _) = period.year_bounds(offset);
        let stored = self.store.facts(start.min(year_start), end).await?;
        let me = self.keys.current().node_id().to_string();
        let mut facts = score::Facts {
            hub: me.clone(),
            counties: self.config.get().counties.clone(),
            ..Default::default()
        };
        // The hub's own operators' reports are not a county's.
        facts.items = stored
            .items
            .into_iter()
            .filter(|i| i.origin != me)
            .filter_map(|i| {
                Some(score::ItemFact {
                    class: Class::from_lane(i.lane)?,
                    id: i.id,
                    origin: i.origin,
                    title: i.title,
                    created_ms: i.created_ms,
                    arrived_ms: i.arrived_ms,
                    deadline_ms: i.deadline_ms,
                    link: i32::from(i.link),
                    answers: i.answers,
                })
            })
            .collect();
        facts.decisions = stored
            .decisions
            .into_iter()
            .map(|d| score::DecisionFact {
                item_id: d.item_id,
                node: d.node,
                seq: d.seq,
                kind: i32::from(d.kind),
                text: d.text,
                at_ms: d.at_ms,
            })
            .collect();
        for (_, _, bytes) in self.store.notices("SOL-").await? {
            let Some(n) = SignedNotice::decode(bytes.as_slice())
                .ok()
                .and_then(|s| notice::peek(&s))
            else {
                continue;
            };
            let (Some(Body::Solicitation(s)), true) = (&n.body, n.publisher == me) else {
                continue;
            };
            let Some(class) = Class::from_proto(s.priority) else {
                continue;
            };
            facts.solicitations.push(score::SolicitationFact {
                id: n.id.clone(),
                topic: s.topic.clone(),
                published_ms: n.at_unix_ms,
                deadline_ms: s.deadline_unix_ms,
                class,
                counties: s.counties.clone(),
                withdrawn: s.withdrawn,
            });
        }
        let mut targets = self.config.get().targets.clone();
        for (county, year, points, adopted) in self.store.targets().await? {
            targets.push(score::Target {
                county,
                year,
                points: (points != 0).then_some(points),
                adopted: u64::try_from(adopted).ok().filter(|a| *a != 0),
            });
        }
        let rules = self.config.get().rules();
        Ok(score::compute(
            &facts,
            &rules,
            &targets,
            period,
            offset,
            self.clock.now_ms(),
        ))
    }

    /// The figures for a period, rendered as asked.
    pub(crate) async fn stats(&self, req: StatsRequest) -> Result<StatsResponse, Error> {
        let period = parse_period(&req.period)?;
        let lang = parse_lang(&req.lang)?;
        let mut stats = self.figures(period).await?;
        if !req.county.is_empty() {
            stats.counties.retain(|c| c.county == req.county);
            if stats.counties.is_empty() {
                let county = req.county.chars().take(80).collect::<String>();
                return Err(OfficeError::NoFigures(Said::both(
                    format!(
                        "no figures for county {county} in {period} (`zhibao stats` without --county lists every county)"
                    ),
                    format!(
                        "{period} 没有县 {county} 的数据（`zhibao stats` 不带 --county 列出每个县）"
                    ),
                ))
                .into());
            }
        }
        let text = match req.format.as_str() {
            "" | "table" => {
                if stats.counties.is_empty() {
                    format!("{}\n", lang.t("No reports in this period.", "本期无数据。"))
                } else {
                    stats.table(lang)
                }
            }
            "csv" => stats.to_csv(),
            "json" => serde_json::to_string_pretty(&stats)
                .map_err(|e| OfficeError::Invalid(not_serialised(&e)))?,
            "html" => score::bulletin_html(&stats, lang, self.keys.current().node_id()),
            other => {
                let other = other.chars().take(20).collect::<String>();
                return Err(OfficeError::Invalid(Said::both(
                    format!("format {other:?}: use table, csv, json or html"),
                    format!("格式 {other:?}：请用 table、csv、json 或 html"),
                ))
                .into());
            }
        };
        Ok(StatsResponse {
            counties: u32::try_from(stats.counties.len()).unwrap_or(u32::MAX),
            text,
        })
    }

    /// Renders a period's bulletin, signs it and keeps it: from there it
    /// goes down to every child like a solicitation. Publishing the same
    /// period again makes a new version (figures as they are now).
    pub(crate) async fn publish_bulletin(
        &self,
        req: StatsRequest,
        actor: &Actor,
    ) -> Result<NoticeView, Error> {
        if !self.has_children {
            return Err(OfficeError::Precondition(Said::both(
                "this node has no [relay] listener, so no county below it to publish to",
                "本节点没有 [relay] 监听，下面没有可发布通报的县",
            ))
            .into());
        }
        let period = parse_period(&req.period)?;
        if matches!(period, Period::Year { .. }) {
            return Err(OfficeError::Invalid(Said::both(
                "a bulletin is for a month (--month) or a quarter (--quarter)",
                "通报按月（--month）或按季度（--quarter）发布",
            ))
            .into());
        }
        let lang = parse_lang(&req.lang)?;
        let stats = self.figures(period).await?;
        let me = self.keys.current().node_id().to_string();
        let html = score::bulletin_html(&stats, lang, &me);
        let json = |stats: &Stats| {
            serde_json::to_string(stats).map_err(|e| OfficeError::Invalid(not_serialised(&e)))
        };
        let mut figures_json = json(&stats)?;
        if html.len() + figures_json.len() > notice::MAX_BULLETIN_BYTES {
            // The county rows fit where the named lists do not; the
            // document itself names them.
            let mut rows = stats.clone();
            rows.adopted.clear();
            rows.instructions.clear();
            rows.late_reports.clear();
            rows.missing_answers.clear();
            figures_json = json(&rows)?;
        }
        let size = html.len() + figures_json.len();
        if size > notice::MAX_BULLETIN_BYTES {
            let limit = notice::MAX_BULLETIN_BYTES;
            return Err(OfficeError::TooLarge(Said::both(
                format!(
                    "the bulletin is {size} bytes, over the {limit} bytes a notice may carry down the tree; write it with -o and circulate the file"
                ),
                format!(
                    "通报有 {size} 字节，超过通知可向下传送的 {limit} 字节；请用 -o 写成文件另行印发"
                ),
            ))
            .into());
        }
        let kind = if matches!(period, Period::Quarter { .. }) {
            lang.t("summary", "小结")
        } else {
            lang.t("bulletin", "通报")
        };
        let title = match lang {
            Lang::Zh => format!("{}信息报送工作{kind}", period.label(lang)),
            Lang::En => format!("Information reporting {kind}, {}", period.label(lang)),
        };
        let id = format!("BUL-{period}");
        let now = self.clock.now_ms();
        let _turn = self.one_at_a_time.lock().await;
        let (version, previous) = match self.store.notice(id.clone()).await? {
            Some((v, bytes)) => {
                let prev = SignedNotice::decode(bytes.as_slice())
                    .map_err(|e| OfficeError::from(NoticeError::Malformed(e)))?;
                (v + 1, notice::digest(&prev).to_vec())
            }
            None => (1, Vec::new()),
        };
        let body = Notice {
            id: id.clone(),
            version,
            previous_sha256: previous.clone(),
            staff: actor.name.clone(),
            at_unix_ms: now,
            body: Some(Body::Bulletin(Bulletin {
                period: period.to_string(),
                title,
                lang: if lang == Lang::En { "en" } else { "zh" }.into(),
                html,
                figures_json,
            })),
            ..Default::default()
        };
        notice::check(&body).map_err(OfficeError::from)?;
        let signed = notice::issue(&self.keys.current(), body);
        let outcome = self
            .store
            .keep_notice(id.clone(), version, previous, signed.encode_to_vec())
            .await?;
        if outcome != NoticeOutcome::Stored {
            return Err(OfficeError::Precondition(Said::both(
                format!("{id} changed at the same moment; try again"),
                format!("{id} 在同一时刻被改动；请重试"),
            ))
            .into());
        }
        tracing::info!(%id, version, staff = %actor.name, bytes = size, "bulletin published");
        self.view_of(signed).await
    }

    /// Sets (or clears) a county's yearly target.
    pub(crate) async fn set_target(&self, req: TargetRequest) -> Result<(), Error> {
        crate::trust::validate_node_id(&req.county).map_err(|e| {
            OfficeError::Invalid(Said::both(format!("county: {e}"), format!("县：{e}")))
        })?;
        if !(2000..=2100).contains(&req.year) {
            return Err(OfficeError::Invalid(Said::both(
                format!("year {} is out of range", req.year),
                format!("年份 {} 超出范围", req.year),
            ))
            .into());
        }
        if req.points < 0 || req.adopted < 0 {
            return Err(OfficeError::Invalid(Said::both(
                "a target cannot be negative",
                "目标不能是负数",
            ))
            .into());
        }
        self.store
            .set_target(req.county, req.year, req.points, req.adopted)
            .await?;
        Ok(())
    }
}

fn parse_period(text: &str) -> Result<Period, OfficeError> {
    Period::from_str(text).map_err(|_| {
        let text = text.chars().take(20).collect::<String>();
        OfficeError::Invalid(Said::both(
            format!(
                "{text:?} is not a period: use a month (2026-11), a quarter (2026Q4) or a year (2026)"
            ),
            format!("{text:?} 不是统计期：请写月份（2026-11）、季度（2026Q4）或年份（2026）"),
        ))
    })
}

fn parse_lang(text: &str) -> Result<Lang, OfficeError> {
    match text {
        "" | "zh" => Ok(Lang::Zh),
        "en" => Ok(Lang::En),
        other => {
            let other = other.chars().take(10).collect::<String>();
            Err(OfficeError::Invalid(Said::both(
                format!("language {other:?}: use zh or en"),
                format!("语言 {other:?}：请用 zh 或 en"),
            )))
        }
    }
}

fn not_serialised(e: &dyn std::fmt::Display) -> Said {
    Said::both(
        format!("figures do not serialise: {e}"),
        format!("数据无法序列化：{e}"),
    )
}
