/** Neural-network modules. */
export * from "./module.ts";
export * from "./layers.ts";
export * from "./slimmable.ts";
export * from "./param_groups.ts";
