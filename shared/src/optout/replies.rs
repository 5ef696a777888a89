//! The texts of the replies, one place per language.

use crate::domain::Locale;
use crate::optout::command::ReplyKind;

pub fn text(kind: ReplyKind, language: Locale, business: &str) -> String {
    match (kind, language) {
        (ReplyKind::OptOutConfirmation, Locale::Spanish) => {
            format!("Listo: no vas a recibir más mensajes de {business}. Si cambiás de idea, respondé ALTA.")
        }
        (ReplyKind::OptOutConfirmation, Locale::English) => {
            format!("Done: you will not get more messages from {business}. Reply START to opt back in.")
        }
        (ReplyKind::OptOutConfirmation, Locale::Portuguese) => {
            format!("Pronto: você não vai receber mais mensagens de {business}. Para voltar, responda VOLTAR.")
        }
        (ReplyKind::OptInConfirmation, Locale::Spanish) => {
            format!("¡Listo! Vas a volver a recibir mensajes de {business}.")
        }
        (ReplyKind::OptInConfirmation, Locale::English) => {
            format!("You are opted back in to messages from {business}.")
        }
        (ReplyKind::OptInConfirmation, Locale::Portuguese) => {
            format!("Pronto! Você vai voltar a receber mensagens de {business}.")
        }
        (ReplyKind::Help, Locale::Spanish) => {
            format!("{business}: para dejar de recibir mensajes respondé BAJA; para volver a recibirlos, ALTA.")
        }
        (ReplyKind::Help, Locale::English) => {
            format!("{business}: reply STOP to stop messages, START to get them again.")
        }
        (ReplyKind::Help, Locale::Portuguese) => {
            format!("{business}: para não receber mais mensagens responda SAIR; para voltar, VOLTAR.")
        }
        (ReplyKind::ErasureReceived, Locale::Spanish) => {
            format!("Recibimos tu pedido: {business} va a borrar tus datos. Podés seguirlo acá:")
        }
        (ReplyKind::ErasureReceived, Locale::English) => {
            format!("We got your request: {business} will delete your data. Follow it here:")
        }
        (ReplyKind::ErasureReceived, Locale::Portuguese) => {
            format!("Recebemos seu pedido: {business} vai apagar seus dados. Acompanhe aqui:")
        }
    }
}

/// The reply to a deletion asked for in the chat: the text, then the request's status page.
pub fn erasure_received(language: Locale, business: &str, status_url: &str) -> String {
    format!("{} {status_url}", text(ReplyKind::ErasureReceived, language, business))
}
