//! What the nurse reads on the enrollment and setup pages, in the language of her phone
//! (Dutch, French, English or German: [`PageLanguage`], chosen by
//! [`crate::http::language::negotiate`] from `?lang=` and `Accept-Language`). Each text is a
//! [`Words`] with all four languages; a `{}` in a text is filled in by the page (a number, a
//! gateway id), never with patient data.

use crate::http::language::Tagged;
use crate::outputs::Language;
use crate::symptom::codes::Words;

/// A language of the nurse's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageLanguage {
    /// Dutch.
    Nl,
    /// French.
    Fr,
    /// English.
    En,
    /// German.
    De,
}

impl PageLanguage {
    /// Every language, as the language switch lists them.
    pub const ALL: [PageLanguage; 4] = [Self::Nl, Self::Fr, Self::En, Self::De];

    /// `words` in this language.
    pub fn pick(self, words: Words) -> &'static str {
        match self {
            Self::Nl => words.nl,
            Self::Fr => words.fr,
            Self::En => words.en,
            Self::De => words.de.unwrap_or(words.en),
        }
    }

    /// `words` with its `{}` replaced by `value`.
    pub fn fill(self, words: Words, value: &str) -> String {
        self.pick(words).replacen("{}", value, 1)
    }

    /// The language's own name, for the switch.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nl => "Nederlands",
            Self::Fr => "Français",
            Self::En => "English",
            Self::De => "Deutsch",
        }
    }

    /// The language of the provider's reports and their labels closest to this one (the
    /// measurement names and units a reading is shown with): German pages show the English
    /// labels, the reports having no German.
    pub fn labels(self) -> Language {
        match self {
            Self::Nl => Language::Nl,
            Self::Fr => Language::Fr,
            Self::En | Self::De => Language::En,
        }
    }
}

impl Tagged for PageLanguage {
    fn tag(self) -> &'static str {
        match self {
            Self::Nl => "nl",
            Self::Fr => "fr",
            Self::En => "en",
            Self::De => "de",
        }
    }
}

const fn w(en: &'static str, nl: &'static str, fr: &'static str, de: &'static str) -> Words {
    Words::new(en, nl, fr).with_de(de)
}

pub const TITLE: Words = w(
    "Set up the home",
    "Installatie bij de patiënt",
    "Installation à domicile",
    "Einrichtung beim Patienten",
);
pub const LANGUAGE: Words = w("Language", "Taal", "Langue", "Sprache");
pub const PATIENT: Words = w(
    "Patient (pseudonym)",
    "Patiënt (pseudoniem)",
    "Patient (pseudonyme)",
    "Patient (Pseudonym)",
);
pub const STEP_CAREPATH: Words = w(
    "Step 1 of 5: choose the carepath",
    "Stap 1 van 5: kies het zorgpad",
    "Étape 1 sur 5 : choisissez le trajet de soins",
    "Schritt 1 von 5: Versorgungspfad wählen",
);
pub const CAREPATH: Words = w("Carepath", "Zorgpad", "Trajet de soins", "Versorgungspfad");
pub const NEXT: Words = w("Next", "Volgende", "Suivant", "Weiter");
pub const STEP_CONNECT: Words = w(
    "Step 2 of 5: connect the gateway",
    "Stap 2 van 5: verbind de gateway",
    "Étape 2 sur 5 : connectez la passerelle",
    "Schritt 2 von 5: Gateway verbinden",
);
pub const CONNECT_HELP: Words = w(
    "Plug the gateway in and wait a minute. Then type the claim code from the label on its box, \
     or scan the label's QR code.",
    "Steek de stekker van de gateway in en wacht een minuut. Typ dan de claimcode van het \
     etiket op de doos, of scan de QR-code van het etiket.",
    "Branchez la passerelle et attendez une minute. Tapez ensuite le code de revendication de \
     l'étiquette sur sa boîte, ou scannez le code QR de l'étiquette.",
    "Schließen Sie das Gateway an und warten Sie eine Minute. Geben Sie dann den Claim-Code \
     vom Etikett auf der Verpackung ein oder scannen Sie den QR-Code des Etiketts.",
);
pub const CODE: Words = w(
    "Claim code (on the gateway's label)",
    "Claimcode (op het etiket van de gateway)",
    "Code de revendication (sur l'étiquette de la passerelle)",
    "Claim-Code (auf dem Etikett des Gateways)",
);
pub const CODE_HINT: Words = w(
    "13 characters, for example 7K2M-9QXD-4TNR-E",
    "13 tekens, bijvoorbeeld 7K2M-9QXD-4TNR-E",
    "13 caractères, par exemple 7K2M-9QXD-4TNR-E",
    "13 Zeichen, zum Beispiel 7K2M-9QXD-4TNR-E",
);
pub const SCAN: Words = w(
    "Scan the QR code",
    "Scan de QR-code",
    "Scanner le code QR",
    "QR-Code scannen",
);
pub const SCAN_STOP: Words = w(
    "Stop scanning",
    "Stop met scannen",
    "Arrêter le scan",
    "Scannen beenden",
);
pub const CONNECT: Words = w(
    "Connect the gateway",
    "Verbind de gateway",
    "Connecter la passerelle",
    "Gateway verbinden",
);
pub const BACK: Words = w(
    "Back to the carepath",
    "Terug naar het zorgpad",
    "Retour au trajet de soins",
    "Zurück zum Versorgungspfad",
);
pub const TECHNICIAN: Words = w(
    "Technician: a one-time code for tm-gateway enroll",
    "Technicus: een eenmalige code voor tm-gateway enroll",
    "Technicien : un code à usage unique pour tm-gateway enroll",
    "Techniker: ein Einmalcode für tm-gateway enroll",
);
pub const ISSUE_CODE: Words = w(
    "Issue enrollment code",
    "Inschrijvingscode aanmaken",
    "Créer un code d'inscription",
    "Registrierungscode erstellen",
);
pub const TYPO_LENGTH: Words = w(
    "A claim code has 13 characters; this one has {}. Compare it with the label.",
    "Een claimcode heeft 13 tekens; deze heeft er {}. Vergelijk met het etiket.",
    "Un code de revendication a 13 caractères ; celui-ci en a {}. Comparez-le avec l'étiquette.",
    "Ein Claim-Code hat 13 Zeichen; dieser hat {}. Vergleichen Sie ihn mit dem Etikett.",
);
pub const TYPO_SYMBOL: Words = w(
    "\u{201c}{}\u{201d} does not appear in claim codes. Compare the code with the label.",
    "\u{201c}{}\u{201d} komt niet voor in claimcodes. Vergelijk de code met het etiket.",
    "\u{ab}\u{a0}{}\u{a0}\u{bb} n'apparaît pas dans les codes de revendication. Comparez le code \
     avec l'étiquette.",
    "\u{201e}{}\u{201c} kommt in Claim-Codes nicht vor. Vergleichen Sie den Code mit dem Etikett.",
);
pub const TYPO_CHECK: Words = w(
    "The code does not check out: a character is mistyped or two are swapped. Compare it with \
     the label.",
    "De code klopt niet: een teken is verkeerd getypt of twee staan omgewisseld. Vergelijk met \
     het etiket.",
    "Le code n'est pas valide : un caractère est mal tapé ou deux sont inversés. Comparez-le \
     avec l'étiquette.",
    "Der Code stimmt nicht: ein Zeichen ist falsch oder zwei sind vertauscht. Vergleichen Sie \
     ihn mit dem Etikett.",
);
pub const NO_GATEWAY: Words = w(
    "No gateway with this code is switched on and waiting: check the code and that the gateway \
     is plugged in.",
    "Geen gateway met deze code staat aan en wacht: controleer de code en of de stekker van de \
     gateway erin zit.",
    "Aucune passerelle avec ce code n'est allumée et en attente : vérifiez le code et que la \
     passerelle est branchée.",
    "Kein Gateway mit diesem Code ist eingeschaltet und wartet: Prüfen Sie den Code und ob das \
     Gateway angeschlossen ist.",
);
pub const ALREADY_CLAIMED: Words = w(
    "This gateway is already claimed; operations can release it.",
    "Deze gateway is al in gebruik; de technische dienst kan hem vrijgeven.",
    "Cette passerelle est déjà utilisée ; l'exploitation peut la libérer.",
    "Dieses Gateway ist bereits vergeben; der Betrieb kann es freigeben.",
);
pub const TOO_MANY: Words = w(
    "Too many wrong codes. Wait a few minutes, then try again.",
    "Te veel foute codes. Wacht enkele minuten en probeer dan opnieuw.",
    "Trop de codes erronés. Attendez quelques minutes, puis réessayez.",
    "Zu viele falsche Codes. Warten Sie einige Minuten und versuchen Sie es dann erneut.",
);
pub const NOT_WAITING: Words = w(
    "This session no longer waits for a gateway.",
    "Deze sessie wacht niet meer op een gateway.",
    "Cette session n'attend plus de passerelle.",
    "Diese Sitzung wartet nicht mehr auf ein Gateway.",
);
pub const LINK_INVALID: Words = w(
    "This enrollment link is not valid.",
    "Deze inschrijvingslink is niet geldig.",
    "Ce lien d'inscription n'est pas valide.",
    "Dieser Registrierungslink ist nicht gültig.",
);
pub const LINK_ENDED: Words = w(
    "This session has ended: its setup link no longer works.",
    "Deze sessie is afgelopen: de installatielink werkt niet meer.",
    "Cette session est terminée : son lien d'installation ne fonctionne plus.",
    "Diese Sitzung ist beendet: ihr Einrichtungslink funktioniert nicht mehr.",
);
pub const CROSS_SITE: Words = w(
    "This form was not sent from its page.",
    "Dit formulier is niet vanaf zijn pagina verstuurd.",
    "Ce formulaire n'a pas été envoyé depuis sa page.",
    "Dieses Formular wurde nicht von seiner Seite gesendet.",
);
pub const INTERNAL: Words = w(
    "Internal error, try again.",
    "Interne fout, probeer opnieuw.",
    "Erreur interne, réessayez.",
    "Interner Fehler, bitte erneut versuchen.",
);
pub const UNKNOWN_CAREPATH: Words = w(
    "Unknown carepath.",
    "Onbekend zorgpad.",
    "Trajet de soins inconnu.",
    "Unbekannter Versorgungspfad.",
);
pub const CLOSED: Words = w(
    "Enrollment is closed: the session is {}.",
    "De inschrijving is gesloten: de sessie is {}.",
    "L'inscription est close : la session est {}.",
    "Die Registrierung ist geschlossen: die Sitzung ist {}.",
);
pub const STEP_PAIR: Words = w(
    "Step 3 of 5: pair the devices",
    "Stap 3 van 5: koppel de toestellen",
    "Étape 3 sur 5 : associez les appareils",
    "Schritt 3 von 5: Geräte koppeln",
);
pub const PAIR_HELP: Words = w(
    "Put each device in pairing mode next to the gateway. The devices the gateway hears appear \
     here.",
    "Zet elk toestel in koppelmodus naast de gateway. De toestellen die de gateway hoort, \
     verschijnen hier.",
    "Mettez chaque appareil en mode d'association près de la passerelle. Les appareils que la \
     passerelle capte apparaissent ici.",
    "Versetzen Sie jedes Gerät neben dem Gateway in den Kopplungsmodus. Die Geräte, die das \
     Gateway empfängt, erscheinen hier.",
);
pub const GATEWAY_WAITING: Words = w(
    "Waiting for the gateway to connect…",
    "Wachten tot de gateway verbinding maakt…",
    "En attente de la connexion de la passerelle…",
    "Warten, bis sich das Gateway verbindet…",
);
pub const GATEWAY_ONLINE: Words = w(
    "Gateway {} is online.",
    "Gateway {} is online.",
    "La passerelle {} est en ligne.",
    "Gateway {} ist online.",
);
pub const GATEWAY_OFFLINE: Words = w(
    "Gateway {} is offline: check its power and its network.",
    "Gateway {} is offline: controleer de stroom en het netwerk.",
    "La passerelle {} est hors ligne : vérifiez son alimentation et son réseau.",
    "Gateway {} ist offline: Prüfen Sie Stromversorgung und Netzwerk.",
);
pub const NEARBY_NONE: Words = w(
    "No device heard yet.",
    "Nog geen toestel gehoord.",
    "Aucun appareil capté pour l'instant.",
    "Noch kein Gerät empfangen.",
);
pub const PAIR: Words = w("Pair", "Koppelen", "Associer", "Koppeln");
pub const RETRY: Words = w("Retry", "Opnieuw", "Réessayer", "Erneut versuchen");
pub const UNPAIR: Words = w("Unpair", "Ontkoppelen", "Dissocier", "Entkoppeln");
pub const REPLACE: Words = w("Replace", "Vervangen", "Remplacer", "Ersetzen");
pub const REPLACE_HINT: Words = w(
    "Unpaired. Now pair the new device.",
    "Ontkoppeld. Koppel nu het nieuwe toestel.",
    "Dissocié. Associez maintenant le nouvel appareil.",
    "Entkoppelt. Koppeln Sie jetzt das neue Gerät.",
);
pub const SEND: Words = w("Send", "Versturen", "Envoyer", "Senden");
pub const CONFIRM: Words = w(
    "The numbers match",
    "De getallen komen overeen",
    "Les nombres correspondent",
    "Die Zahlen stimmen überein",
);
pub const SECRET: Words = w(
    "Code shown on the device",
    "Code op het toestel",
    "Code affiché sur l'appareil",
    "Code auf dem Gerät",
);
pub const SIGNAL: Words = w("signal", "signaal", "signal", "Signal");
pub const PAIRED: Words = w("paired", "gekoppeld", "associé", "gekoppelt");
pub const STEP_SEARCHING: Words = w(
    "Looking for the device…",
    "Toestel zoeken…",
    "Recherche de l'appareil…",
    "Gerät wird gesucht…",
);
pub const STEP_BONDING: Words = w(
    "Connecting to the device…",
    "Verbinden met het toestel…",
    "Connexion à l'appareil…",
    "Verbindung mit dem Gerät…",
);
pub const STEP_NEEDS_PIN: Words = w(
    "Type the PIN the device shows.",
    "Typ de pincode die het toestel toont.",
    "Tapez le code PIN affiché par l'appareil.",
    "Geben Sie die PIN ein, die das Gerät anzeigt.",
);
pub const STEP_NEEDS_PASSKEY: Words = w(
    "Type the passkey the device shows.",
    "Typ de sleutelcode die het toestel toont.",
    "Tapez la clé d'accès affichée par l'appareil.",
    "Geben Sie den Schlüssel ein, den das Gerät anzeigt.",
);
pub const STEP_CONFIRM_NUMBER: Words = w(
    "Check that the device shows this number:",
    "Controleer dat het toestel dit getal toont:",
    "Vérifiez que l'appareil affiche ce nombre :",
    "Prüfen Sie, ob das Gerät diese Zahl anzeigt:",
);
pub const STEP_TYPE_ON_DEVICE: Words = w(
    "Type this number on the device:",
    "Typ dit getal op het toestel:",
    "Tapez ce nombre sur l'appareil :",
    "Geben Sie diese Zahl am Gerät ein:",
);
pub const STEP_DEVICE_INFORMATION: Words = w(
    "Reading the device information…",
    "Toestelgegevens lezen…",
    "Lecture des informations de l'appareil…",
    "Geräteinformationen werden gelesen…",
);
pub const STEP_BATTERY: Words = w(
    "Reading the battery…",
    "Batterij lezen…",
    "Lecture de la batterie…",
    "Batterie wird gelesen…",
);
pub const STEP_CLOCK: Words = w(
    "Setting the device's clock…",
    "Klok van het toestel instellen…",
    "Réglage de l'horloge de l'appareil…",
    "Uhr des Geräts wird gestellt…",
);
pub const STEP_PAIRED: Words = w("Paired.", "Gekoppeld.", "Associé.", "Gekoppelt.");
pub const STEP_FAILED: Words = w(
    "Pairing failed:",
    "Koppelen mislukt:",
    "L'association a échoué :",
    "Kopplung fehlgeschlagen:",
);
pub const PROFILE_BLOOD_PRESSURE: Words = w(
    "Blood pressure monitor",
    "Bloeddrukmeter",
    "Tensiomètre",
    "Blutdruckmessgerät",
);
pub const PROFILE_SCALE: Words = w("Scale", "Weegschaal", "Balance", "Waage");
pub const PROFILE_BODY_COMPOSITION: Words = w(
    "Body composition scale",
    "Lichaamsanalyseweegschaal",
    "Balance impédancemètre",
    "Körperanalysewaage",
);
pub const PROFILE_THERMOMETER: Words =
    w("Thermometer", "Thermometer", "Thermomètre", "Thermometer");
pub const PROFILE_GLUCOSE: Words = w(
    "Glucose meter",
    "Glucosemeter",
    "Glucomètre",
    "Blutzuckermessgerät",
);
pub const PROFILE_OXIMETER: Words = w(
    "Pulse oximeter",
    "Saturatiemeter",
    "Oxymètre de pouls",
    "Pulsoximeter",
);
pub const PROFILE_HEART_RATE: Words = w(
    "Heart rate monitor",
    "Hartslagmeter",
    "Cardiofréquencemètre",
    "Herzfrequenzmesser",
);
pub const FAILED_NOT_FOUND: Words = w(
    "The gateway cannot hear the device: put it in pairing mode next to the gateway and try again.",
    "De gateway hoort het toestel niet: zet het in koppelmodus naast de gateway en probeer opnieuw.",
    "La passerelle n'entend pas l'appareil : mettez-le en mode d'association à côté de la passerelle et réessayez.",
    "Das Gateway hört das Gerät nicht: Gerät neben dem Gateway in den Kopplungsmodus versetzen und erneut versuchen.",
);
pub const FAILED_NO_ANSWER: Words = w(
    "No code was sent in time: try again and type the code the device shows.",
    "Er werd niet op tijd een code verstuurd: probeer opnieuw en typ de code die het toestel toont.",
    "Aucun code n'a été envoyé à temps : réessayez et tapez le code affiché par l'appareil.",
    "Es wurde nicht rechtzeitig ein Code gesendet: erneut versuchen und den Code des Geräts eingeben.",
);
pub const FAILED_WRONG_SECRET: Words = w(
    "The device refused the code: check the number on its screen and try again.",
    "Het toestel weigerde de code: controleer het getal op het scherm en probeer opnieuw.",
    "L'appareil a refusé le code : vérifiez le nombre sur son écran et réessayez.",
    "Das Gerät hat den Code abgelehnt: Zahl auf seinem Bildschirm prüfen und erneut versuchen.",
);
pub const FAILED_REFUSED: Words = w(
    "The device refused to pair: put it in pairing mode and try again.",
    "Het toestel weigerde te koppelen: zet het in koppelmodus en probeer opnieuw.",
    "L'appareil a refusé l'association : mettez-le en mode d'association et réessayez.",
    "Das Gerät hat die Kopplung abgelehnt: in den Kopplungsmodus versetzen und erneut versuchen.",
);
pub const FAILED_UNREADABLE: Words = w(
    "The device paired but could not be read: keep it awake next to the gateway and try again.",
    "Het toestel is gekoppeld maar kon niet gelezen worden: houd het wakker naast de gateway en probeer opnieuw.",
    "L'appareil est associé mais n'a pas pu être lu : gardez-le allumé à côté de la passerelle et réessayez.",
    "Das Gerät ist gekoppelt, konnte aber nicht gelesen werden: wach neben dem Gateway halten und erneut versuchen.",
);
pub const FAILED_GATEWAY: Words = w(
    "The gateway's Bluetooth failed: unplug the gateway, plug it in again and try again; if it happens again, call support.",
    "Bluetooth van de gateway faalde: trek de stekker uit, steek hem terug in en probeer opnieuw; gebeurt het weer, bel de ondersteuning.",
    "Le Bluetooth de la passerelle a échoué : débranchez-la, rebranchez-la et réessayez ; si cela se reproduit, appelez le support.",
    "Das Bluetooth des Gateways ist ausgefallen: Stecker ziehen, wieder einstecken und erneut versuchen; bei Wiederholung den Support anrufen.",
);
pub const STEP_UNPAIRED: Words = w("Unpaired.", "Ontkoppeld.", "Dissocié.", "Entkoppelt.");
pub const STEP_MEASURE: Words = w(
    "Step 4 of 5: take a measurement",
    "Stap 4 van 5: doe een meting",
    "Étape 4 sur 5 : faites une mesure",
    "Schritt 4 von 5: eine Messung durchführen",
);
pub const MEASURE_HELP: Words = w(
    "Take one measurement with each paired device. It appears here once it reached the care \
     team.",
    "Doe met elk gekoppeld toestel één meting. Ze verschijnt hier zodra ze bij het zorgteam is.",
    "Faites une mesure avec chaque appareil associé. Elle apparaît ici dès qu'elle est arrivée \
     chez l'équipe de soins.",
    "Führen Sie mit jedem gekoppelten Gerät eine Messung durch. Sie erscheint hier, sobald sie \
     beim Behandlungsteam angekommen ist.",
);
pub const MEASURE_NOW: Words = w(
    "Take a measurement now.",
    "Doe nu een meting.",
    "Faites une mesure maintenant.",
    "Jetzt eine Messung durchführen.",
);
pub const STEP_SUMMARY: Words = w(
    "Step 5 of 5: summary",
    "Stap 5 van 5: overzicht",
    "Étape 5 sur 5 : résumé",
    "Schritt 5 von 5: Übersicht",
);
pub const GATEWAY: Words = w("Gateway", "Gateway", "Passerelle", "Gateway");
pub const DEVICES: Words = w("Devices", "Toestellen", "Appareils", "Geräte");
pub const BATTERY: Words = w("battery", "batterij", "batterie", "Batterie");
pub const NO_DEVICE: Words = w(
    "No device paired yet.",
    "Nog geen toestel gekoppeld.",
    "Aucun appareil associé pour l'instant.",
    "Noch kein Gerät gekoppelt.",
);
pub const FINISH: Words = w(
    "Finish the setup",
    "Installatie afronden",
    "Terminer l'installation",
    "Einrichtung abschließen",
);
pub const FINISHED: Words = w(
    "The setup is finished. The gateway now collects the readings by itself.",
    "De installatie is klaar. De gateway verzamelt de metingen nu zelf.",
    "L'installation est terminée. La passerelle collecte désormais les mesures toute seule.",
    "Die Einrichtung ist abgeschlossen. Das Gateway sammelt die Messungen jetzt selbstständig.",
);
pub const NEEDS_SCRIPT: Words = w(
    "This page follows the gateway with JavaScript; without it, reload the page to see the \
     latest state.",
    "Deze pagina volgt de gateway met JavaScript; laad de pagina zonder JavaScript opnieuw om \
     de laatste stand te zien.",
    "Cette page suit la passerelle avec JavaScript ; sans lui, rechargez la page pour voir \
     l'état le plus récent.",
    "Diese Seite verfolgt das Gateway mit JavaScript; ohne JavaScript laden Sie die Seite neu, \
     um den aktuellen Stand zu sehen.",
);

/// The words the setup script shows, by the key it uses.
pub const SCRIPT_WORDS: &[(&str, Words)] = &[
    ("waiting", GATEWAY_WAITING),
    ("online", GATEWAY_ONLINE),
    ("offline", GATEWAY_OFFLINE),
    ("nearbyNone", NEARBY_NONE),
    ("pair", PAIR),
    ("retry", RETRY),
    ("unpair", UNPAIR),
    ("replace", REPLACE),
    ("replaceHint", REPLACE_HINT),
    ("send", SEND),
    ("confirm", CONFIRM),
    ("secret", SECRET),
    ("signal", SIGNAL),
    ("paired", PAIRED),
    ("measureNow", MEASURE_NOW),
    ("gateway", GATEWAY),
    ("devices", DEVICES),
    ("battery", BATTERY),
    ("noDevice", NO_DEVICE),
    ("finished", FINISHED),
    ("scanStop", SCAN_STOP),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_of_the_script_has_all_four_languages() {
        for (key, words) in SCRIPT_WORDS {
            assert!(words.de.is_some(), "{key}");
            for lang in PageLanguage::ALL {
                assert!(!lang.pick(*words).is_empty(), "{key} {lang:?}");
            }
        }
        assert_eq!(
            PageLanguage::De.fill(GATEWAY_ONLINE, "gw-1"),
            "Gateway gw-1 ist online."
        );
    }
}
