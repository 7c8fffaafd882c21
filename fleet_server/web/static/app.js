// Helpers shared by the pages: JSON calls to the API with the session cookie.
"use strict";

const zhigui = {
  csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },

  // Calls the JSON API; resolves to {ok, status, body}. Unsafe methods carry the CSRF token.
  async api(method, path, body) {
    const options = { method, credentials: "same-origin", headers: {} };
    if (method !== "GET") {
      options.headers["X-CSRF-Token"] = zhigui.csrf();
    }
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch("/api/v1" + path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    return { ok: response.ok, status: response.status, body: data };
  },

  lang() {
    return document.documentElement.lang === "en" ? "en" : "zh";
  },

  // The message of an API error body in the page's language.
  errorText(body, fallback) {
    if (!body) {
      return fallback;
    }
    return (zhigui.lang() === "en" ? body.message_en : body.message) || fallback;
  },

  yuan(fen) {
    const sign = fen < 0 ? "-" : "";
    const abs = Math.abs(fen);
    return sign + Math.floor(abs / 100).toLocaleString("en-US") + "." + String(abs % 100).padStart(2, "0");
  },
};
