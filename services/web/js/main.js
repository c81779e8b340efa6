// Entry point: the log-in / register form, then the chat. The token lives in sessionStorage:
// it is gone when the tab closes, and each tab can be a different person.

import * as api from "./api.js";
import { ChatApp } from "./app.js";
import { checkPassword, checkUsername, explain } from "./words.js";

const TOKEN_KEY = "chat.token";
const USER_KEY = "chat.user";
const NOTICE_KEY = "chat.notice"; // a message for the log-in form that survives the reload

const $ = (id) => document.getElementById(id);

function showAuth() {
  $("auth").hidden = false;
  $("app").hidden = true;
  $("auth-error").textContent = sessionStorage.getItem(NOTICE_KEY) ?? "";
  sessionStorage.removeItem(NOTICE_KEY);
  $("auth-username").focus();
  $("auth-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const action = e.submitter?.value ?? "login";
    const username = form.username.value.trim();
    const password = form.password.value;
    $("auth-error").textContent = "";
    if (action === "register") {
      // The rules in words before asking the server, which would only say the same.
      const problem = checkUsername(username) || checkPassword(password);
      if (problem) {
        $("auth-error").textContent = problem;
        return;
      }
    }
    form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      if (action === "register") await api.register(username, password);
      const { token, user } = await api.logIn(username, password);
      sessionStorage.setItem(TOKEN_KEY, token);
      sessionStorage.setItem(USER_KEY, user.username);
      startChat(token, user.username);
    } catch (err) {
      $("auth-error").textContent = explain(err, action);
    } finally {
      form.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    }
  });
}

function logOut(notice) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
  if (notice) sessionStorage.setItem(NOTICE_KEY, notice);
  // A fresh page is the simplest way to drop every socket, timer and message of the session.
  window.location.reload();
}

function startChat(token, user) {
  $("auth").hidden = true;
  $("app").hidden = false;
  const app = new ChatApp({ token, user, onLogout: logOut });
  app.start(); // focuses the message box once the first room is open
}

const token = sessionStorage.getItem(TOKEN_KEY);
const user = sessionStorage.getItem(USER_KEY);
if (token && user) startChat(token, user);
else showAuth();
