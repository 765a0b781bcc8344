// The dashboard's words: every text a person reads comes from a catalogue (i18n/nl.json,
// i18n/en.json), never from the code. Dutch by default (the platform's operators work in
// Dutch municipalities); the choice is remembered in this browser. Numbers, dates and times are
// written with Intl in the language's locale, always in Amsterdam time.

const LANGUAGE_STORE = "lantaarn.language";
export const LANGUAGES = { nl: "nl-NL", en: "en-GB" };
export const TIME_ZONE = "Europe/Amsterdam";
const DEFAULT = "nl";

let language = DEFAULT;
let catalogue = {};

/** The language asked for: `?lang=` in the address, then the remembered choice, then Dutch. */
export function wantedLanguage() {
  const asked = new URLSearchParams(location.search).get("lang")
    ?? localStorage.getItem(LANGUAGE_STORE) ?? DEFAULT;
  return asked in LANGUAGES ? asked : DEFAULT;
}

const fetching = new Map(); // language -> its catalogue, asked for once

/** Load a language's catalogue and make it the page's (its `lang` attribute too). Asked for once
 * per language: boot.js starts it, app.js waits for the same request. */
export function loadLanguage(wanted = wantedLanguage()) {
  if (!fetching.has(wanted)) {
    fetching.set(wanted, fetch(`/dashboard/i18n/${wanted}.json`, { headers: { Accept: "application/json" } })
      .then((response) => {
        if (!response.ok) throw new Error(`/dashboard/i18n/${wanted}.json: ${response.status}`);
        return response.json();
      }));
  }
  return fetching.get(wanted).then((words) => {
    catalogue = words;
    language = wanted;
    document.documentElement.lang = wanted;
    return wanted;
  });
}

/** Remember a language for the next visit. */
export function rememberLanguage(wanted) {
  if (wanted in LANGUAGES) localStorage.setItem(LANGUAGE_STORE, wanted);
}

export function currentLanguage() {
  return language;
}

/** The BCP 47 locale of the language shown (nl-NL, en-GB), for Intl. */
export function locale() {
  return LANGUAGES[language];
}

/**
 * The text of `key` with `{name}` placeholders filled from `params`. A key missing from the
 * catalogue is an error the browser tests catch (they fail on any console error).
 */
export function t(key, params = {}) {
  const text = catalogue[key];
  if (text === undefined) {
    console.error(`lantaarn: no translation for "${key}" in ${language}`);
    return key;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/** Whether the catalogue has a text for `key` (for codes from the API that may be new). */
export function has(key) {
  return key in catalogue;
}

/**
 * Fill the page's fixed texts: `data-i18n` sets the text, `data-i18n-label` the aria-label,
 * `data-i18n-placeholder` and `data-i18n-title` those attributes.
 */
export function translatePage(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-label]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nLabel));
  }
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  for (const node of root.querySelectorAll("[data-i18n-title]")) node.title = t(node.dataset.i18nTitle);
  const title = root.querySelector("title[data-i18n]");
  if (title) document.title = title.textContent;
}
