use super::*;
use Action::*;
use Locale::*;

enum Want {
    Out(Option<Locale>),
    In(Option<Locale>),
    InIfOptedOut,
    HelpIn(Locale),
    Review,
    Nothing,
}

fn check(text: &str, want: Want, tenant: &TenantKeywords) {
    let got = classify(text, tenant);
    let expected = match want {
        Want::Out(language) => Decision::Act {
            action: OptOut,
            language,
            only_while_opted_out: false,
        },
        Want::In(language) => Decision::Act {
            action: OptIn,
            language,
            only_while_opted_out: false,
        },
        Want::InIfOptedOut => Decision::Act {
            action: OptIn,
            language: Some(English),
            only_while_opted_out: true,
        },
        Want::HelpIn(l) => Decision::Act {
            action: Help,
            language: Some(l),
            only_while_opted_out: false,
        },
        Want::Review => Decision::Review,
        Want::Nothing => Decision::None,
    };
    assert_eq!(got, expected, "message {text:?}");
}

/// Each line: a message as people write it, and what the policy must decide.
#[test]
fn the_keyword_table() {
    let none = TenantKeywords::default();
    let cases: Vec<(&str, Want)> = vec![
        // English, alone and with courtesy words.
        ("STOP", Want::Out(Some(English))),
        ("stop", Want::Out(Some(English))),
        ("Stop.", Want::Out(Some(English))),
        ("  STOP  ", Want::Out(Some(English))),
        ("STOP please", Want::Out(Some(English))),
        ("please stop", Want::Out(Some(English))),
        ("Stop now, thanks!", Want::Out(Some(English))),
        ("STOPALL", Want::Out(Some(English))),
        ("stop all", Want::Out(Some(English))),
        ("UNSUBSCRIBE", Want::Out(Some(English))),
        ("cancel", Want::Out(Some(English))),
        ("END", Want::Out(Some(English))),
        ("Quit", Want::Out(Some(English))),
        ("OPTOUT", Want::Out(Some(English))),
        ("opt out", Want::Out(Some(English))),
        ("Opt-Out", Want::Out(Some(English))),
        ("REVOKE", Want::Out(Some(English))),
        ("remove", Want::Out(Some(English))),
        // Spanish.
        ("BAJA", Want::Out(Some(Spanish))),
        ("baja por favor", Want::Out(Some(Spanish))),
        ("Baja, gracias", Want::Out(Some(Spanish))),
        ("Por favor, dar de baja", Want::Out(Some(Spanish))),
        ("darme de baja", Want::Out(Some(Spanish))),
        ("FIN", Want::Out(Some(Spanish))),
        ("Alto", Want::Out(Some(Spanish))),
        ("DETENER", Want::Out(Some(Spanish))),
        ("NO MÁS", Want::Out(Some(Spanish))),
        ("no mas!!", Want::Out(Some(Spanish))),
        ("desuscribir", Want::Out(Some(Spanish))),
        ("baja ya", Want::Out(Some(Spanish))),
        // Portuguese, and words both languages share.
        ("PARE", Want::Out(Some(Portuguese))),
        ("pare obrigado", Want::Out(Some(Portuguese))),
        ("SAIR", Want::Out(Some(Portuguese))),
        ("descadastrar", Want::Out(Some(Portuguese))),
        ("parar", Want::Out(None)),
        ("cancelar", Want::Out(None)),
        ("cancelar, obrigada", Want::Review),
        ("No más, gracias", Want::Review),
        ("STOP STOP", Want::Out(Some(English))),
        ("baja baja baja", Want::Out(Some(Spanish))),
        ("dame de baja", Want::Out(Some(Spanish))),
        ("parar por favor", Want::Out(Some(Spanish))),
        // Emoji, odd spacing, fullwidth letters, accents and case.
        ("🛑 STOP 🛑", Want::Out(Some(English))),
        ("stop 🙏", Want::Out(Some(English))),
        ("ＳＴＯＰ", Want::Out(Some(English))),
        ("ｂａｊａ", Want::Out(Some(Spanish))),
        ("\tBaja\n", Want::Out(Some(Spanish))),
        ("BÁJA", Want::Out(Some(Spanish))),
        ("¡¡BAJA!!", Want::Out(Some(Spanish))),
        ("dar   de   baja", Want::Out(Some(Spanish))),
        // Opting back in.
        ("START", Want::In(Some(English))),
        ("unstop", Want::In(Some(English))),
        ("Yes", Want::InIfOptedOut),
        ("ALTA", Want::In(Some(Spanish))),
        ("volver por favor", Want::In(Some(Spanish))),
        ("VOLTAR", Want::In(Some(Portuguese))),
        // Help.
        ("HELP", Want::HelpIn(English)),
        ("info", Want::HelpIn(English)),
        ("Ayuda", Want::HelpIn(Spanish)),
        ("ajuda!", Want::HelpIn(Portuguese)),
        // Decoys: a keyword inside a longer sentence never opts out; it goes to review.
        ("No me den de baja, me encantan sus promos", Want::Review),
        ("Stop by the store tomorrow?", Want::Review),
        ("don't stop", Want::Review),
        ("Quiero darme de baja de la promo de zapatillas", Want::Review),
        ("¿Cuándo es el fin de la oferta?", Want::Review),
        ("Hasta el final", Want::Nothing),
        ("no pares", Want::Review),
        ("No quiero recibir más mensajes", Want::Review),
        ("parem", Want::Review),
        ("Parece bueno", Want::Nothing),
        ("stopped", Want::Nothing),
        ("Hola, ¿tienen stock?", Want::Nothing),
        ("no", Want::Nothing),
        ("please", Want::Nothing),
        ("", Want::Nothing),
        ("🙂", Want::Nothing),
        ("S T O P", Want::Nothing),
    ];
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for (text, want) in cases {
        check(text, want, &none);
    }
}

#[test]
fn decoys_never_opt_out() {
    let none = TenantKeywords::default();
    for decoy in [
        "No me den de baja, me encantan sus promos",
        "Stop by the store tomorrow?",
        "no pares",
        "don't stop",
    ] {
        assert!(
            !matches!(classify(decoy, &none), Decision::Act { action: OptOut, .. }),
            "{decoy:?} must not opt out"
        );
    }
}

#[test]
fn tenants_add_keywords_and_button_ids() {
    let tenant = TenantKeywords {
        opt_out: vec!["Basta".to_owned()],
        opt_out_button_ids: vec!["NO_PROMOS".to_owned()],
    };
    check("basta", Want::Out(None), &tenant);
    check("basta gracias", Want::Out(Some(Spanish)), &tenant);
    check("basta", Want::Nothing, &TenantKeywords::default());
    assert!(is_opt_out_button("no_promos", &tenant));
    assert!(is_opt_out_button("STOP", &TenantKeywords::default()));
    assert!(!is_opt_out_button("confirm", &tenant));
}

#[test]
fn buttons_act_on_ids_and_explicit_labels_only() {
    let none = TenantKeywords::default();
    let out = Decision::Act {
        action: OptOut,
        language: None,
        only_while_opted_out: false,
    };
    assert_eq!(classify_button("STOP", None, &none), out);
    assert_eq!(classify_button("promo_2", Some("Stop promotions"), &none), out);
    assert_eq!(classify_button("promo_2", Some("Detener promociones"), &none), out);
    // A template's "Cancelar" or "Yes" button is about something else: a person looks at it.
    assert_eq!(
        classify_button("appointment_cancel", Some("Cancelar"), &none),
        Decision::Review
    );
    assert_eq!(classify_button("confirm", Some("Yes"), &none), Decision::Review);
    assert_eq!(classify_button("confirm", Some("Confirmar"), &none), Decision::None);
    assert_eq!(classify_button("size_m", None, &none), Decision::None);
}
