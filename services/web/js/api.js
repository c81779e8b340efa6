// The REST half of the public contract (docs/API.md): JSON in, JSON out, errors as
// {"error": {"code", "message"}}.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function request(method, path, { token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "network", "the server cannot be reached");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    throw new ApiError(response.status, error.code || "http", error.message || response.statusText);
  }
  return data;
}

export const register = (username, password) =>
  request("POST", "/api/users", { body: { username, password } });

export const logIn = (username, password) =>
  request("POST", "/api/tokens", { body: { username, password } });

export const listRooms = (token) => request("GET", "/api/rooms", { token });

export const createRoom = (token, name, isPrivate, members) =>
  request("POST", "/api/rooms", { token, body: { name, private: isPrivate, members } });

export function roomMessages(token, room, { before, after, limit = 50 } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (before !== undefined) query.set("before", String(before));
  if (after !== undefined) query.set("after", String(after));
  return request("GET", `/api/rooms/${encodeURIComponent(room)}/messages?${query}`, { token });
}

/** People whose username starts with `prefix` (case-insensitive, at most 20). */
export const searchUsers = (token, prefix) =>
  request("GET", `/api/users?${new URLSearchParams({ q: prefix })}`, { token });

/** The direct-message room with `user`: created (201) or the existing one (200). */
export const openDm = (token, user) => request("POST", "/api/dms", { token, body: { user } });

/** One page of public rooms, in name order, after the name `after`. */
export function publicRooms(token, { after, limit = 20 } = {}) {
  const query = new URLSearchParams({ scope: "public", limit: String(limit) });
  if (after) query.set("after", after);
  return request("GET", `/api/rooms?${query}`, { token });
}

export const addMember = (token, room, user) =>
  request("POST", `/api/rooms/${encodeURIComponent(room)}/members`, { token, body: { user } });

/** Leaving (user = me) or, for the room's creator, removing someone. 204: no body. */
export const removeMember = (token, room, user) =>
  request("DELETE",
    `/api/rooms/${encodeURIComponent(room)}/members/${encodeURIComponent(user)}`, { token });
