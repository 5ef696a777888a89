//! The public status page, `GET /privacy/requests/{code}`: HTML in Spanish by default, English
//! with `?lang=en` or `Accept-Language: en`, JSON with `Accept: application/json`. It shows the
//! request's kind, status and dates, nothing about the person. Every code, known or not, costs
//! one read by its hash and the same comparison, so timing does not tell codes apart.

use crate::Deletion;
use serde::Serialize;
use shared::apigw::{self, Request, Response};
use shared::deadline::RequestKind;
use shared::domain::{PrivacyRequest, RequestId, RequestStatus};
use shared::timestamp::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Es,
    En,
}

/// `?lang=` wins, then the first language of `Accept-Language`; Spanish otherwise.
pub fn language(req: &Request) -> Lang {
    let asked = apigw::query(req, "lang").or_else(|| apigw::header(req, "accept-language"));
    match asked.map(|a| a.trim_start().get(..2).unwrap_or("").to_ascii_lowercase()) {
        Some(l) if l == "en" => Lang::En,
        _ => Lang::Es,
    }
}

fn wants_json(req: &Request) -> bool {
    apigw::header(req, "accept").is_some_and(|a| a.contains("application/json"))
}

/// Constant-time equality: the stored code against the one asked for.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

#[derive(Serialize)]
struct StatusView {
    status: RequestStatus,
    kind: RequestKind,
    received_at: Timestamp,
    due_at: Timestamp,
    completed_at: Option<Timestamp>,
}

fn status_label(s: RequestStatus, lang: Lang) -> &'static str {
    match (s, lang) {
        (RequestStatus::Received, Lang::Es) => "Recibida: la estamos revisando",
        (RequestStatus::Received, Lang::En) => "Received: we are reviewing it",
        (RequestStatus::Approved, Lang::Es) => "Aprobada: en cola para ejecutarse",
        (RequestStatus::Approved, Lang::En) => "Approved: queued to be carried out",
        (RequestStatus::InProgress, Lang::Es) => "En curso",
        (RequestStatus::InProgress, Lang::En) => "In progress",
        (RequestStatus::Completed, Lang::Es) => "Completada",
        (RequestStatus::Completed, Lang::En) => "Completed",
        (RequestStatus::Rejected, Lang::Es) => "Rechazada",
        (RequestStatus::Rejected, Lang::En) => "Rejected",
    }
}

fn kind_label(k: RequestKind, lang: Lang) -> &'static str {
    match (k, lang) {
        (RequestKind::Erasure, Lang::Es) => "Eliminación de datos",
        (RequestKind::Erasure, Lang::En) => "Data deletion",
        (RequestKind::Access, Lang::Es) => "Acceso y portabilidad",
        (RequestKind::Access, Lang::En) => "Access and portability",
        (RequestKind::Rectification, Lang::Es) => "Rectificación",
        (RequestKind::Rectification, Lang::En) => "Rectification",
        (RequestKind::Objection, Lang::Es) => "Oposición al tratamiento",
        (RequestKind::Objection, Lang::En) => "Objection to processing",
        (RequestKind::MinorReport, Lang::Es) => "Denuncia de datos de un menor",
        (RequestKind::MinorReport, Lang::En) => "Report of a minor's data",
    }
}

/// What the outcome means for the person, in their language, without saying what was stored.
fn outcome(r: &PrivacyRequest, lang: Lang) -> Option<&'static str> {
    let receipt = r.receipt.as_ref()?;
    let app_user = r
        .subjects
        .iter()
        .all(|s| s.kind == shared::identity::IdentifierKind::MetaAppUserId);
    Some(match (receipt.no_data_found, app_user, lang) {
        (true, true, Lang::Es) => {
            "Este pedido llegó desde Meta por un usuario de la aplicación (el administrador de una cuenta de empresa). No guardamos datos de los usuarios de la aplicación: no había nada que eliminar."
        }
        (true, true, Lang::En) => {
            "This request came from Meta for a user of the app (a business account's administrator). We store no data about the app's users: there was nothing to delete."
        }
        (true, false, Lang::Es) => "No encontramos datos asociados a los identificadores indicados.",
        (true, false, Lang::En) => "We found no data linked to the identifiers given.",
        (false, _, Lang::Es) => {
            "Eliminamos los datos y verificamos que no quedara ninguna copia. Conservamos solo, sin datos personales, la constancia de esta eliminación y, si la pediste, tu baja de mensajes."
        }
        (false, _, Lang::En) => {
            "We deleted the data and verified that no copy was left. We keep only, without personal data, the record of this deletion and, if you asked for it, your opt-out."
        }
    })
}

fn date(t: Timestamp) -> String {
    let d = t.to_datetime();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn page(lang: Lang, title: &str, rows: &[(&str, String)], note: Option<&str>) -> String {
    let html_lang = match lang {
        Lang::Es => "es",
        Lang::En => "en",
    };
    let mut body = String::new();
    for (k, v) in rows {
        body.push_str(&format!("<tr><th>{k}</th><td>{v}</td></tr>"));
    }
    let note = note.map(|n| format!("<p>{n}</p>")).unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"{html_lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;\
         padding:0 1em;color:#1a1a1a;background:#fff}}h1{{font-size:1.5em;color:#0b5}}th{{text-align:left;\
         padding:.3em 1em .3em 0}}</style></head><body><h1>{title}</h1><table>{body}</table>{note}</body></html>"
    )
}

fn html(status: u16, text: String) -> Response {
    let mut r = apigw::respond(status, "text/html; charset=utf-8", text);
    for (name, value) in [
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-robots-tag", "noindex"),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        ),
    ] {
        r.headers.insert(name, http::HeaderValue::from_static(value));
    }
    r
}

pub fn render(r: Option<&PrivacyRequest>, lang: Lang, json: bool) -> Response {
    let Some(r) = r else {
        if json {
            return apigw::error(404, "no request has this confirmation code");
        }
        let (title, text) = match lang {
            Lang::Es => (
                "Pedido no encontrado",
                "Ningún pedido tiene este código de confirmación.",
            ),
            Lang::En => ("Request not found", "No request has this confirmation code."),
        };
        return html(404, page(lang, title, &[], Some(text)));
    };
    if json {
        return apigw::json(
            200,
            &StatusView {
                status: r.status,
                kind: r.kind,
                received_at: r.received_at,
                due_at: r.due_at,
                completed_at: r.closed_at.filter(|_| r.status == RequestStatus::Completed),
            },
        );
    }
    let (title, kind, status, received, due, done) = match lang {
        Lang::Es => (
            "Estado de tu pedido de privacidad",
            "Pedido",
            "Estado",
            "Recibido",
            "Plazo",
            "Completado",
        ),
        Lang::En => (
            "Your privacy request's status",
            "Request",
            "Status",
            "Received",
            "Due by",
            "Completed",
        ),
    };
    let mut rows = vec![
        (kind, kind_label(r.kind, lang).to_owned()),
        (status, status_label(r.status, lang).to_owned()),
        (received, date(r.received_at)),
        (due, date(r.due_at)),
    ];
    if let (RequestStatus::Completed, Some(at)) = (r.status, r.closed_at) {
        rows.push((done, date(at)));
    }
    html(200, page(lang, title, &rows, outcome(r, lang)))
}

impl Deletion {
    pub(crate) async fn status_page(&self, req: &Request, code: &str) -> Response {
        // Any text is looked up the same way; a request is shown only to its own code.
        let found = match self.stores.privacy_requests.get(RequestId::for_code(code)).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e.log_safe(), "status page lookup failed");
                return apigw::error(503, "temporarily unavailable");
            }
        };
        let shown = found.filter(|r| same(r.code.as_str().as_bytes(), code.as_bytes()));
        render(shown.as_ref(), language(req), wants_json(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
