// The vendored libraries, imported once here so that every module names them the same way.
// Preact renders; htm turns tagged templates into Preact calls without a build step or eval
// (the Content-Security-Policy allows neither inline scripts nor eval); uPlot draws the charts.
import { Fragment, createContext, h, render } from "../vendor/preact.mjs";
import {
  useCallback, useContext, useEffect, useMemo, useReducer, useRef, useState,
} from "../vendor/hooks.mjs";
import htm from "../vendor/htm.mjs";
import uPlot from "../vendor/uPlot.esm.js";

export const html = htm.bind(h);
export {
  Fragment, createContext, h, render, uPlot,
  useCallback, useContext, useEffect, useMemo, useReducer, useRef, useState,
};
