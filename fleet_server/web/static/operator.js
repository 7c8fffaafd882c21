// The operator's pages: live fleet board and map, alert buttons, and small form helpers.
// Needs app.js (zhigui.api). Texts come from the page's #operator-texts in its language.
"use strict";

const operatorPages = {
  texts: {},
  timer: null,
  lastAlertsKey: "",

  text(key, values) {
    const template = operatorPages.texts[key] ?? key;
    return template.replace(/\{(\w+)\}/g, (whole, name) =>
      values && name in values ? String(values[name]) : whole,
    );
  },

  // The same rule as format_time on the server: HH:MM:SS today in Asia/Shanghai, else
  // YYYY-MM-DD HH:MM.
  when(iso) {
    if (!iso) {
      return "—";
    }
    const parts = (moment) => {
      const format = new Intl.DateTimeFormat("en-CA", {
        timeZone: "Asia/Shanghai",
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
        hourCycle: "h23",
      });
      return Object.fromEntries(format.formatToParts(moment).map((part) => [part.type, part.value]));
    };
    const local = parts(new Date(iso));
    const today = parts(new Date());
    const date = `${local.year}-${local.month}-${local.day}`;
    if (date === `${today.year}-${today.month}-${today.day}`) {
      return `${local.hour}:${local.minute}:${local.second}`;
    }
    return `${date} ${local.hour}:${local.minute}`;
  },

  // The same rule as cabinet_condition on the server.
  condition(row) {
    if (row.connection === "unknown" || row.connection === "offline") {
      return row.connection;
    }
    const faulty =
      row.doors_closed === false ||
      row.lock_faults > 0 ||
      row.scale_faults > 0 ||
      row.serial_link_up === false ||
      row.open_alerts > 0;
    return faulty ? "attention" : "ok";
  },

  // [text, class] of each live field of a fleet row, as the fleet_facts macro writes them.
  facts(row) {
    const t = operatorPages.text;
    const unknown = t("value.unknown");
    const seen = row.doors_closed !== null;
    let doors = [unknown, ""];
    let locks = [unknown, ""];
    let scales = [unknown, ""];
    if (seen) {
      doors = row.doors_closed ? [t("value.doors_closed"), ""] : [t("value.doors_open"), "bad"];
      locks = row.lock_faults
        ? [t("value.locks_fault", { count: row.lock_faults }), "bad"]
        : [t("value.locks_ok"), ""];
      scales = row.scale_faults
        ? [t("value.scales_fault", { count: row.scale_faults }), "bad"]
        : [t("value.scales_ok"), ""];
    }
    const backlog =
      row.backlog_messages === null
        ? [unknown, ""]
        : [t("value.backlog", { count: row.backlog_messages }), row.backlog_messages ? "warn" : ""];
    const lastSeen = row.last_seen_at ? operatorPages.when(row.last_seen_at) : t("value.never");
    return { doors, locks, scales, backlog, "last-seen": [lastSeen, ""] };
  },

  alertTitle(alert) {
    const numbers = {};
    for (const part of alert.subject.split("/")) {
      const [name, value] = part.split(":");
      if (name) {
        numbers[name] = value;
      }
    }
    return operatorPages.text("alert." + alert.kind, {
      door: numbers.door ?? "?",
      shelf: numbers.shelf ?? "?",
    });
  },

  alertProduct(alert) {
    const name = alert.kind === "low_stock" ? alert.detail.product_name : null;
    return name ? " · " + name : "";
  },

  async getAll(path) {
    const items = [];
    for (;;) {
      const separator = path.includes("?") ? "&" : "?";
      const result = await zhigui.api("GET", `${path}${separator}limit=500&offset=${items.length}`);
      if (!result.ok) {
        throw result;
      }
      items.push(...result.body.items);
      if (items.length >= result.body.total || result.body.items.length === 0) {
        return items;
      }
    }
  },

  // --- Fleet board ------------------------------------------------------------------------

  updateCard(card, row, alerts) {
    const condition = operatorPages.condition(row);
    card.dataset.condition = condition;
    card.classList.remove("cond-ok", "cond-attention", "cond-offline", "cond-unknown");
    card.classList.add("cond-" + condition);
    const badge = card.querySelector('[data-field="connection"]');
    badge.textContent = operatorPages.text("connection." + row.connection);
    badge.className = "badge " + ({ online: "ok", offline: "bad" }[row.connection] ?? "");
    for (const [name, [value, level]] of Object.entries(operatorPages.facts(row))) {
      const field = card.querySelector(`[data-field="${name}"]`);
      if (field) {
        field.textContent = value;
        field.className = level;
      }
    }
    const list = card.querySelector('[data-field="alerts"]');
    if (list) {
      list.replaceChildren(
        ...alerts.map((alert) => {
          const item = document.createElement("li");
          item.className = "badge bad";
          const title = document.createElement("span");
          title.textContent = operatorPages.alertTitle(alert);
          const product = document.createElement("span");
          product.lang = "zh-CN";
          product.textContent = operatorPages.alertProduct(alert);
          item.append(title, product);
          return item;
        }),
      );
    }
  },

  alertItem(template, alert, row) {
    const t = operatorPages.text;
    const item = template.content.firstElementChild.cloneNode(true);
    const slot = (name) => item.querySelector(`[data-slot="${name}"]`);
    item.dataset.alertId = alert.id;
    item.classList.add("state-" + alert.state);
    slot("state").textContent = t("alert_state." + alert.state);
    slot("state").className = "badge " + (alert.state === "open" ? "bad" : "warn");
    slot("title").textContent = operatorPages.alertTitle(alert);
    slot("product").textContent = operatorPages.alertProduct(alert);
    slot("kiosk").textContent = alert.kiosk_id;
    slot("kiosk").href = "/operator/cabinets/" + encodeURIComponent(alert.kiosk_id);
    slot("where").textContent = row ? `${row.school_name} ${row.placement_name}` : "";
    slot("raised").textContent = t("alerts.raised", { time: operatorPages.when(alert.raised_at) });
    slot("occurrences").textContent = t("alerts.occurrences", { count: alert.occurrences });
    slot("acknowledged").textContent = alert.acknowledged_by
      ? t("alerts.acknowledged_by", { who: alert.acknowledged_by })
      : "";
    for (const form of item.querySelectorAll("form[data-alert-action]")) {
      form.action = `/operator/alerts/${alert.id}/${form.dataset.alertAction}`;
      form.hidden = form.dataset.alertAction === "acknowledge" && alert.state !== "open";
    }
    return item;
  },

  updateBoard(root, rows, alerts) {
    const byKiosk = new Map(rows.map((row) => [row.kiosk_id, row]));
    const shown = alerts.filter((alert) => byKiosk.has(alert.kiosk_id));
    for (const card of root.querySelectorAll("[data-kiosk]")) {
      const row = byKiosk.get(card.dataset.kiosk);
      if (row) {
        operatorPages.updateCard(card, row, shown.filter((a) => a.kiosk_id === row.kiosk_id));
      }
    }
    for (const group of root.querySelectorAll("[data-school]")) {
      const schoolRows = rows.filter((row) => String(row.school_id) === group.dataset.school);
      const online = schoolRows.filter((row) => row.connection === "online").length;
      const count = group.querySelector("[data-group-count]");
      if (count) {
        count.textContent = operatorPages.text("board.group_count", {
          count: schoolRows.length,
          online,
        });
      }
    }
    const summary = {
      cabinets: rows.length,
      online: rows.filter((row) => row.connection === "online").length,
      offline: rows.filter((row) => row.connection === "offline").length,
      alerts: shown.length,
    };
    for (const [name, value] of Object.entries(summary)) {
      const figure = document.querySelector(`[data-summary="${name}"]`);
      if (figure) {
        figure.textContent = String(value);
      }
    }
    operatorPages.updateAlertList(shown, byKiosk);
  },

  updateAlertList(alerts, byKiosk) {
    const list = document.getElementById("alert-list");
    const template = document.getElementById("alert-item-template");
    if (!list || !template) {
      return;
    }
    const key = JSON.stringify(
      alerts.map((a) => [a.id, a.state, a.occurrences, a.acknowledged_by, a.raised_at]),
    );
    if (key === operatorPages.lastAlertsKey) {
      return;
    }
    operatorPages.lastAlertsKey = key;
    list.replaceChildren(
      ...alerts.map((alert) => operatorPages.alertItem(template, alert, byKiosk.get(alert.kiosk_id))),
    );
    const empty = document.querySelector("[data-alerts-empty]");
    if (empty) {
      empty.hidden = alerts.length > 0;
    }
  },

  // --- Map --------------------------------------------------------------------------------

  updateMap(root, rows) {
    for (const row of rows) {
      const dot = root.querySelector(`circle[data-kiosk="${CSS.escape(row.kiosk_id)}"]`);
      if (!dot) {
        continue;
      }
      const condition = operatorPages.condition(row);
      dot.dataset.condition = condition;
      dot.setAttribute("class", "map-dot dot-" + condition);
      const words = operatorPages.text("condition." + condition);
      const title = dot.querySelector("title");
      if (title) {
        title.textContent = `${row.kiosk_id} · ${words}`;
      }
      const item = root.querySelector(`li[data-kiosk="${CSS.escape(row.kiosk_id)}"]`);
      if (item) {
        item.querySelector('[data-field="swatch"]').setAttribute("class", "map-dot dot-" + condition);
        item.querySelector('[data-field="condition"]').textContent = words;
      }
    }
  },

  // --- Polling ----------------------------------------------------------------------------

  showError(message) {
    const box = document.querySelector("[data-live-error]");
    if (box) {
      box.textContent = message;
      box.hidden = !message;
    }
  },

  async refresh(root) {
    clearTimeout(operatorPages.timer);
    const interval = Number(root.dataset.intervalMs) || 2000;
    const school = root.dataset.schoolId;
    const filter = school ? `school_id=${encodeURIComponent(school)}` : "";
    try {
      const [rows, alerts] = await Promise.all([
        operatorPages.getAll("/fleet/cabinets" + (filter ? "?" + filter : "")),
        operatorPages.getAll("/alerts?unresolved=true" + (filter ? "&" + filter : "")),
      ]);
      const known = JSON.parse(root.dataset.kiosks || "[]").sort().join(" ");
      const current = rows.map((row) => row.kiosk_id).sort().join(" ");
      if (known !== current) {
        // A cabinet was added or removed: the server lays out the groups again.
        operatorPages.showError(operatorPages.text("board.changed"));
        window.location.reload();
        return;
      }
      if (root.dataset.live === "fleet") {
        operatorPages.updateBoard(root, rows, alerts);
      } else {
        operatorPages.updateMap(root, rows);
      }
      operatorPages.showError("");
      const stamp = document.querySelector("[data-updated]");
      if (stamp) {
        stamp.textContent = operatorPages.text("board.updated", {
          time: operatorPages.when(new Date().toISOString()),
        });
      }
    } catch (failure) {
      if (failure && failure.status === 401) {
        operatorPages.showError(operatorPages.text("board.signed_out"));
        return;
      }
      const reason = zhigui.errorText(failure && failure.body, String(failure?.status ?? failure));
      operatorPages.showError(operatorPages.text("board.stale", { error: reason }));
    }
    operatorPages.timer = setTimeout(() => operatorPages.refresh(root), interval);
  },

  startLive() {
    const root = document.querySelector("[data-live]");
    if (!root) {
      return;
    }
    const interval = Number(root.dataset.intervalMs) || 2000;
    operatorPages.timer = setTimeout(() => operatorPages.refresh(root), interval);
  },

  // --- Alert buttons ----------------------------------------------------------------------

  async onAlertAction(event) {
    const form = event.target.closest("form[data-alert-action]");
    if (!form) {
      return;
    }
    event.preventDefault();
    const item = form.closest("[data-alert-id]");
    for (const button of item.querySelectorAll("button")) {
      button.disabled = true;
    }
    const action = form.dataset.alertAction;
    const result = await zhigui.api("POST", `/alerts/${item.dataset.alertId}/${action}`, {});
    const root = document.querySelector("[data-live]");
    if (!root) {
      window.location.reload();
      return;
    }
    if (!result.ok) {
      const reason = zhigui.errorText(result.body, String(result.status));
      operatorPages.showError(operatorPages.text("alerts.failed", { error: reason }));
    }
    operatorPages.lastAlertsKey = "";
    await operatorPages.refresh(root);
  },

  // --- Forms ------------------------------------------------------------------------------

  // Shows the catalog's pack weight and price of the product chosen in a planogram row.
  showCatalogHint(select) {
    const hint = select.closest(".form")?.querySelector("[data-catalog-hint]");
    const texts = document.getElementById("catalog-texts");
    if (!hint || !texts) {
      return;
    }
    const option = select.selectedOptions[0];
    if (!option || !option.value) {
      hint.replaceChildren();
      return;
    }
    const template = JSON.parse(texts.textContent).weight_price;
    const values = {
      weight: option.dataset.weight,
      tolerance: option.dataset.tolerance,
      price: option.dataset.price,
    };
    hint.textContent = template.replace(/\{(\w+)\}/g, (whole, name) => values[name] ?? whole);
    const badge = document.getElementById("sample-badge");
    if (option.dataset.sample === "true" && badge) {
      hint.append(" ", badge.content.firstElementChild.cloneNode(true));
    }
  },

  // Shows only the fields of the chosen refund mode.
  showRefundMode(form) {
    const checked = form.querySelector('input[name="mode"]:checked');
    const mode = checked ? checked.value : "amount";
    for (const part of form.querySelectorAll("[data-refund-mode]")) {
      part.hidden = part.dataset.refundMode !== mode;
    }
  },

  start() {
    const texts = document.getElementById("operator-texts");
    if (texts) {
      operatorPages.texts = JSON.parse(texts.textContent);
    }
    document.addEventListener("submit", operatorPages.onAlertAction);
    document.addEventListener("change", (event) => {
      if (event.target.matches("select[data-catalog-select]")) {
        operatorPages.showCatalogHint(event.target);
      }
      const refundForm = event.target.closest("form[data-refund-form]");
      if (refundForm) {
        operatorPages.showRefundMode(refundForm);
      }
    });
    for (const form of document.querySelectorAll("form[data-refund-form]")) {
      operatorPages.showRefundMode(form);
    }
    for (const button of document.querySelectorAll("[data-print]")) {
      button.addEventListener("click", () => window.print());
    }
    operatorPages.startLive();
  },
};

operatorPages.start();
