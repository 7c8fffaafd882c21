// The student's pages: follow a running purchase until its receipt can be shown.
"use strict";

(function followPurchase() {
  const panel = document.querySelector("[data-testid=purchase-status][data-purchase-id]");
  const textsElement = document.getElementById("purchase-texts");
  if (!panel || !textsElement) {
    return;
  }
  const texts = JSON.parse(textsElement.textContent);
  const purchaseId = panel.dataset.purchaseId;
  const title = panel.querySelector("[data-testid=status-title]");
  const hint = panel.querySelector("[data-testid=status-hint]");
  const errorBox = panel.querySelector("[data-testid=live-error]");
  // Index of the progress step each state of the session belongs to.
  const STEPS = { created: 0, unlock_sent: 0, unlocked: 1, door_open: 1, settling: 2, expired: 2 };
  // States after which the server renders the final page.
  const FINISHED = new Set(["completed", "cancelled", "failed"]);
  const POLL_MS = 1000;
  // An expired session waits for the cabinet's outbox, which can take hours.
  const SLOW_POLL_MS = 5000;

  function showState(state) {
    if (panel.dataset.state === state || !texts.states[state]) {
      return;
    }
    panel.dataset.state = state;
    title.textContent = texts.states[state].title;
    hint.textContent = texts.states[state].hint;
    document.title = texts.states[state].title;
    const step = STEPS[state];
    for (const item of panel.querySelectorAll("[data-step]")) {
      const index = Number(item.dataset.step);
      if (index < step) {
        item.className = "done";
      } else if (index === step) {
        item.className = "current";
      } else {
        item.className = "";
      }
    }
  }

  function showError(text, signIn) {
    errorBox.textContent = text;
    if (signIn) {
      const link = document.createElement("a");
      link.href = "/login?next=" + encodeURIComponent(window.location.pathname) + "&expired=1";
      link.textContent = texts.sign_in_again;
      errorBox.append(" ", link);
    }
    errorBox.hidden = false;
  }

  async function poll() {
    let result;
    try {
      result = await zhigui.api("GET", "/purchases/" + purchaseId);
    } catch (error) {
      showError(texts.errors.network, false);
      window.setTimeout(poll, SLOW_POLL_MS);
      return;
    }
    if (result.status === 401) {
      const code = result.body && result.body.code === "token_expired" ? "token_expired" : "not_authenticated";
      showError(texts.errors[code], true);
      return;
    }
    if (!result.ok) {
      showError(texts.errors.unknown, false);
      window.setTimeout(poll, SLOW_POLL_MS);
      return;
    }
    errorBox.hidden = true;
    const purchase = result.body;
    if (purchase.sale_id || FINISHED.has(purchase.state)) {
      window.location.reload();
      return;
    }
    showState(purchase.state);
    window.setTimeout(poll, purchase.state === "expired" ? SLOW_POLL_MS : POLL_MS);
  }

  window.setTimeout(poll, POLL_MS);
})();
