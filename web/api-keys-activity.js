// The panel's "Activity" section (admins): the audit trail, newest first,
// loaded when opened, a page at a time.
// A mixin of the panel (see api-keys-panel.js): its methods share the panel's
// state. This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

import { glyph, h, srOnly, uid } from "./api-keys-dom.js";
import { actionLabel, describeActor, describeDetail, targetsKey } from "./api-keys-audit.js";
import { LIMITS, formatEventTime, formatNumber, formatRelative } from "./api-keys-lib.js";

export const withActivity = (Base) => class Activity extends Base {
  /** The collapsible "Activity" section; it loads when opened. */
  buildActivity() {
    const bodyId = uid("activity");
    const titleId = uid("activity-title");
    const a = this.activity;
    a.toggle = h("button", {
      type: "button", id: titleId, class: "cak-disclosure", "aria-expanded": "false", "aria-controls": bodyId,
      onclick: () => this.toggleActivity(),
    }, h("span", { class: "cak-chevron", "aria-hidden": "true", text: "\u203a" }), "Activity");
    a.status = h("p", { class: "cak-count cak-muted", role: "status", "data-testid": "activity-status" });
    a.list = h("ol", { class: "cak-events", "aria-labelledby": titleId, "data-testid": "activity-list" });
    // Busy buttons are aria-disabled, not disabled: a disabled button would drop the keyboard focus.
    const unlessBusy = (fn) => (event) => {
      if (event.currentTarget.getAttribute("aria-disabled") !== "true") fn();
    };
    a.more = h("button", {
      type: "button", class: "cak-btn cak-more", hidden: true, onclick: unlessBusy(() => this.loadActivity({ more: true })),
    }, "Load more");
    a.reload = h("button", {
      type: "button", class: "cak-btn cak-btn-icon cak-btn-small", title: "Reload activity",
      onclick: unlessBusy(() => this.loadActivity()),
    }, glyph("\u21bb"), srOnly("Reload activity"));
    a.body = h("div", { id: bodyId, class: "cak-activity-body", hidden: true },
      h("div", { class: "cak-activity-bar" },
        h("p", { class: "cak-hint", text: "Key changes, sign-ins and settings, newest first." }), a.reload),
      a.list, a.status, a.more);
    return h("section", { class: "cak-card cak-activity", "aria-labelledby": titleId, "data-testid": "activity" },
      h("h3", { class: "cak-activity-head" }, a.toggle), a.body);
  }

  toggleActivity() {
    const a = this.activity;
    a.open = !a.open;
    a.toggle.setAttribute("aria-expanded", String(a.open));
    a.body.hidden = !a.open;
    if (a.open) this.loadActivity();
    else {
      a.loading++; // answers still on their way are not wanted any more
      a.events = [];
      a.list.replaceChildren();
    }
  }

  /** The trail may have changed (this panel changed a key): reload it if it is open. */
  activityChanged() {
    if (this.activity.open) this.loadActivity();
  }

  /** Load the newest page, or with `more` the page before the oldest event shown. */
  async loadActivity({ more = false } = {}) {
    const a = this.activity;
    const ticket = ++a.loading;
    const oldest = a.events.length ? Math.min(...a.events.map((e) => e.id)) : null;
    const query = `limit=${LIMITS.AUDIT_PAGE}${more && oldest !== null ? `&before=${oldest}` : ""}`;
    const setBusy = (busy) => {
      for (const button of [a.more, a.reload]) button.setAttribute("aria-disabled", String(busy));
      a.list.setAttribute("aria-busy", String(busy));
    };
    setBusy(true);
    a.status.textContent = more ? "Loading older events…" : "Loading activity…";
    let data;
    try {
      data = await this.request(`/audit?${query}`);
    } catch (error) {
      if (ticket !== a.loading || this.destroyed) return;
      this.fail("Could not load the activity", error);
      a.status.textContent = `Could not load the activity: ${error?.message || error}`;
      return;
    } finally {
      if (ticket === a.loading && !this.destroyed) setBusy(false);
    }
    if (ticket !== a.loading || this.destroyed) return;
    const events = (Array.isArray(data.events) ? data.events : []).filter((e) => e && Number.isFinite(e.id));
    const moreHadFocus = more && document.activeElement === a.more;
    if (!more) {
      a.events = [];
      a.list.replaceChildren();
    }
    const known = new Set(a.events.map((e) => e.id));
    const fresh = events.filter((e) => !known.has(e.id));
    a.events.push(...fresh);
    // Names of keys that are gone now, as the trail recorded them.
    for (const event of fresh) {
      if (targetsKey(event) && typeof event.detail?.name === "string" && !a.names.has(event.target)) {
        // events come newest first, so the first name seen is the latest one
        a.names.set(event.target, event.detail.name);
      }
    }
    const items = fresh.map((event) => this.eventItem(event));
    a.list.append(...items);
    a.done = events.length < LIMITS.AUDIT_PAGE;
    a.more.hidden = a.done || !a.events.length;
    const shown = a.events.length;
    a.status.textContent = shown === 0
      ? "No activity recorded yet."
      : `${formatNumber(shown)} ${shown === 1 ? "event" : "events"} shown${a.done ? "; that is all." : "."}`;
    // "Load more" by keyboard: go on reading at the first older event.
    if (more && moreHadFocus && items.length) items[0].focus();
    else if (more && moreHadFocus) a.toggle.focus();
  }

  /** Name of a key by key_id: the loaded key list first, then names the trail recorded. */
  keyName(keyId) {
    return this.findKey(keyId)?.name ?? this.activity.names.get(keyId);
  }

  eventItem(event) {
    const nameOf = (keyId) => this.keyName(keyId);
    const failed = event.action === "sign_in_failed";
    let target = null;
    if (targetsKey(event)) {
      const name = nameOf(event.target);
      target = name !== undefined
        ? h("span", { class: "cak-name-text", title: `Key ID ${event.target}`, text: `“${name}”` })
        : h("code", { class: "cak-code", text: event.target });
    }
    const detail = describeDetail(event);
    const when = Number(event.at) || 0;
    return h("li", { class: `cak-event${failed ? " cak-event-bad" : ""}`, tabindex: "-1", "data-event-id": String(event.id), "data-action": event.action },
      h("p", { class: "cak-event-title" },
        h("strong", { text: actionLabel(event.action) }), target ? [" ", target] : null),
      detail ? h("p", { class: "cak-event-detail", text: detail }) : null,
      h("p", { class: "cak-event-meta" }, [
        when ? h("time", { datetime: new Date(when * 1000).toISOString(), title: formatRelative(when), text: formatEventTime(when) }) : null,
        h("span", { class: "cak-event-actor", text: describeActor(event.actor, nameOf) }),
        event.client ? h("span", { class: "cak-event-client", title: "Client address", text: event.client }) : null,
      ].filter(Boolean).flatMap((part, i) => (i ? [" · ", part] : [part]))));
  }
};
