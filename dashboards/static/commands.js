// Commanding lamps: a lamppost's dim level with a control to change it and its command history,
// and group commands (a tenant and kind, or the lamps in the map's view) whose states fill in
// as the lamps answer. Commands go through the API, which stores them before they are sent.

import { ApiError, getJson, sendJson } from "./api.js";
import { clock, dateTime, el, number } from "./format.js";
import { has, t } from "./i18n.js";

const STATES = ["created", "sent", "done", "refused", "failed", "expired"];
const FINAL = new Set(["done", "refused", "failed", "expired"]);
const HISTORY = 15;

function argText(value) {
  if (typeof value === "number") return number(value);
  if (typeof value === "boolean") return t(value ? "commandArg.true" : "commandArg.false");
  return String(value);
}

function describe(command) {
  const name = has(`command.${command.name}`) ? t(`command.${command.name}`) : command.name;
  const args = Object.entries(command.args ?? {})
    .map(([k, v]) => `${has(`commandArg.${k}`) ? t(`commandArg.${k}`) : k} ${argText(v)}`)
    .join(", ");
  return args ? `${name} (${args})` : name;
}

/** When a schedule's step falls, in words: "23:00" stays, "sunset" and "sunrise-30" are the
 * API's codes, not words to show. */
function stepText(at) {
  const sun = /^(sunset|sunrise)(?:([+-])(\d+))?$/.exec(at);
  if (!sun) return at;
  const event = t(`lamp.at.${sun[1]}`);
  if (!sun[2]) return event;
  return t(sun[2] === "+" ? "lamp.at.after" : "lamp.at.before", { event, minutes: number(Number(sun[3])) });
}

function stateText(state) {
  return has(`commandState.${state}`) ? t(`commandState.${state}`) : state;
}

function describeSchedule(answer) {
  if (!answer.schedule) return t("lamp.noSchedule");
  const parts = [t("lamp.schedule", { name: answer.schedule.name })];
  if (answer.inForce) {
    parts.push(t("lamp.inForce", {
      level: number(answer.inForce.level), time: clock(answer.inForce.moment), at: stepText(answer.inForce.at),
    }));
  }
  if (answer.next) {
    parts.push(t("lamp.next", {
      level: number(answer.next.level), time: clock(answer.next.moment), at: stepText(answer.next.at),
    }));
  }
  const [name, ...steps] = parts;
  return steps.length ? t("lamp.scheduleSteps", { name, steps: steps.join("; ") }) : name;
}

function refusal(error) {
  if (error instanceof ApiError && error.status === 403) return t("lamp.forbidden");
  return t("lamp.notSent", { detail: error.message });
}

/** The dim level panel and command history of one device (lampposts only). */
export class LampControl {
  constructor(ctx) {
    this.ctx = ctx;
    this.deviceId = null;
    this.panel = document.getElementById("device-commands");
    this.level = document.getElementById("dim-input");
    this.note = document.getElementById("dim-note");
    document.getElementById("dim-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
  }

  /** Show the panel for a device (hidden unless the API takes commands and it is a lamp). */
  open(device) {
    this.deviceId = device.deviceId;
    const lamp = device.kind === "lamppost";
    this.panel.hidden = !(lamp && this.ctx.caps.commands);
    this.note.textContent = "";
    document.getElementById("dim-now").textContent = "–";
    document.getElementById("lamp-schedule").textContent = "";
    document.querySelector("#command-history tbody").replaceChildren();
    this.scheduleShown = false;
  }

  /** The newest reading's dim level, and the history, refreshed with the page. */
  async refresh(reading) {
    if (this.panel.hidden) return;
    const level = reading?.metrics?.dim_level;
    document.getElementById("dim-now").textContent =
      level === undefined ? t("lamp.noReading") : `${number(level)} %`;
    const id = this.deviceId;
    if (this.ctx.caps.schedules && !this.scheduleShown) {
      const answer = await getJson(`/v1/devices/${id}/schedule`);
      if (id !== this.deviceId) return;
      document.getElementById("lamp-schedule").textContent = describeSchedule(answer);
      this.scheduleShown = true;
    }
    const page = await getJson(`/v1/devices/${id}/commands`, { limit: HISTORY });
    if (id !== this.deviceId) return;
    const rows = page.items.map((c) => el("tr", { dataset: { commandId: c.id, state: c.state } },
      el("td", {}, dateTime(c.createdAt)),
      el("td", {}, describe(c)),
      el("td", { className: `state-${c.state}` }, stateText(c.state)),
      el("td", {}, c.detail ?? ""),
      el("td", {}, (has(`role.${c.issuedRole}`) ? t(`role.${c.issuedRole}`) : c.issuedRole) +
        (c.issuedBy ? ` ${c.issuedBy}` : ""))));
    document.querySelector("#command-history tbody").replaceChildren(...rows);
  }

  async send() {
    const level = Number(this.level.value);
    const id = this.deviceId;
    this.note.textContent = t("lamp.sending");
    try {
      const command = await sendJson("POST", `/v1/devices/${id}/commands`,
        { name: "set_dim_level", args: { level } });
      this.note.textContent = t("lamp.sent", { level, state: stateText(command.state) });
      await this.refresh(null);
    } catch (error) {
      this.note.textContent = refusal(error);
    }
  }
}

/** A command to many lamps at once, and its progress per state. */
export class GroupCommand {
  constructor(ctx, map) {
    this.ctx = ctx;
    this.map = map;
    this.timer = 0;
    this.note = document.getElementById("group-note");
    document.getElementById("group-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
  }

  /** Show the panel when the API takes commands. */
  enable() {
    document.getElementById("group-form").hidden = !this.ctx.caps.commands;
  }

  selector() {
    const scope = document.querySelector("input[name=group-scope]:checked").value;
    const selector = { kind: "lamppost" };
    const tenant = this.ctx.tenant();
    if (tenant) selector.tenant = tenant;
    if (scope === "view") {
      // The area the operator chose on the map, or else what the map shows.
      selector.bbox = (this.map.area ?? this.map.bounds()).map((v) => v.toFixed(6)).join(",");
    } else if (!tenant) {
      return null;
    }
    return selector;
  }

  async send() {
    const selector = this.selector();
    if (selector === null) {
      this.note.textContent = t("group.chooseTenant");
      return;
    }
    const level = Number(document.getElementById("group-level").value);
    clearTimeout(this.timer);
    this.note.textContent = t("lamp.sending");
    try {
      const group = await sendJson("POST", "/v1/commands",
        { name: "set_dim_level", args: { level }, selector });
      this.note.textContent = t("group.sent", { level, n: group.devices });
      this.show(group);
      this.follow(group.id);
    } catch (error) {
      this.note.textContent = refusal(error);
    }
  }

  show(group) {
    const holder = document.getElementById("group-progress");
    holder.dataset.groupId = group.id;
    holder.dataset.finished = String(group.finished);
    holder.replaceChildren(...STATES.map((state) => el("span",
      { className: `count state-${state}`, dataset: { state } },
      `${stateText(state)} ${group.progress[state] ?? 0}`)));
    const answered = STATES.filter((s) => FINAL.has(s))
      .reduce((n, s) => n + (group.progress[s] ?? 0), 0);
    const bar = document.getElementById("group-bar");
    bar.max = group.devices;
    bar.value = answered;
  }

  /** Poll the group's progress each second until every lamp's command is final. */
  follow(groupId) {
    const poll = async () => {
      try {
        const group = await getJson(`/v1/command-groups/${groupId}`);
        if (document.getElementById("group-progress").dataset.groupId !== groupId) return;
        this.show(group);
        if (!group.finished) this.timer = setTimeout(poll, 1000);
      } catch (error) {
        this.note.textContent = t("group.progressUnknown", { detail: error.message });
        this.timer = setTimeout(poll, 3000);
      }
    };
    this.timer = setTimeout(poll, 500);
  }
}
